//! The `monoship` binary: parse, run, map the outcome to an exit code.

use std::io::Write;
use std::process::ExitCode;

use monoship::cli::{self, Invocation};
use monoship::{app, config};

fn main() -> ExitCode {
    let env = |k: &str| std::env::var(k).ok();
    let in_action = env("GITHUB_ACTIONS").as_deref() == Some("true");
    let invocation = match cli::parse(std::env::args_os().collect(), &env) {
        Ok(i) => i,
        Err(e) => {
            if let Some(clap_err) = e.downcast_ref::<clap::Error>() {
                let _ = clap_err.print();
                return ExitCode::from(if clap_err.use_stderr() { 2 } else { 0 });
            }
            report_error(&e.to_string(), in_action, vec![]);
            return ExitCode::from(2);
        }
    };
    match invocation {
        Invocation::PrintSchema => {
            print!("{}", config::json_schema());
            ExitCode::SUCCESS
        }
        Invocation::Run(request) => {
            init_logging(&env);
            if let Some(a) = &request.action {
                for warning in &a.warnings {
                    let w = monoship::report::commands::Annotation::new(
                        monoship::report::commands::Level::Warning,
                        warning,
                    );
                    eprintln!("{w}");
                }
            }
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            match app::run(&request, &mut stdout.lock(), &mut stderr.lock()) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    report_error(
                        &monoship::error::render_chain(&e),
                        request.action.is_some(),
                        e.annotations(),
                    );
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}

fn report_error(
    message: &str,
    in_action: bool,
    annotations: Vec<monoship::report::commands::Annotation>,
) {
    let mut err = std::io::stderr().lock();
    if in_action {
        let hint = monoship::error::loopback_refused_hint(message);
        let mut annotations = annotations;
        if let Some(hint) = hint {
            for a in &mut annotations {
                a.message = format!("{}\n{hint}", a.message);
            }
        }
        let message = &match hint {
            Some(hint) => format!("{message}\n{hint}"),
            None => message.to_string(),
        };
        if annotations.is_empty() {
            let a = monoship::report::commands::Annotation::new(
                monoship::report::commands::Level::Error,
                message,
            );
            let _ = writeln!(err, "{a}");
        }
        for a in annotations {
            let _ = writeln!(err, "{a}");
        }
    } else {
        let _ = writeln!(err, "error: {message}");
    }
}

/// Debug logs go to stderr when `MONOSHIP_LOG` asks for them (e.g. `MONOSHIP_LOG=debug`) or
/// the job runs with debug logging (`RUNNER_DEBUG=1`). The request signer stays silent at
/// every level: its trace lines print canonical requests, and a presigned URL's carries the
/// session token.
fn init_logging(env: &dyn Fn(&str) -> Option<String>) {
    let directives = cli::log_filter(
        env("MONOSHIP_LOG").as_deref(),
        env("RUNNER_DEBUG").as_deref(),
    );
    let filter = tracing_subscriber::EnvFilter::try_new(directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
        .add_directive("aws_sigv4=off".parse().expect("a valid directive"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogLines)
        .with_ansi(false)
        .without_time()
        .try_init();
}

/// Stderr for log events, each line made inert for the Actions runner: a log line quotes
/// errors from servers and names from the repository, and must never read as a workflow
/// command. monoship's own commands are printed elsewhere.
struct LogLines;

impl std::io::Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let safe = monoship::report::commands::inert_lines(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(safe.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
