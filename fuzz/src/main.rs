//! `monoship-fuzz`: runs the property targets for a number of cases or seconds and prints what
//! each found. Exit 1 when any target crashed or broke a property, 2 on bad usage.

use std::process::ExitCode;

use monoship_fuzz::harness::{with_big_stack, Budget};
use monoship_fuzz::targets::ALL;

const USAGE: &str = "\
usage: monoship-fuzz [--target NAME[,NAME...]|all] [--cases N] [--seconds S] [--seed N]

Runs each target until N cases or S seconds (per target), whichever comes first; with
neither, 1000 cases. --seed replays a run (default: from the clock, printed).
targets:";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (names, budget) = match parse(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            for t in &ALL {
                eprintln!("  {:<13} {}", t.name, t.about);
            }
            return ExitCode::from(2);
        }
    };
    println!(
        "seed {} ({})",
        budget.seed,
        match (budget.cases, budget.seconds) {
            (Some(c), Some(s)) => format!("{c} cases or {s} s per target"),
            (Some(c), None) => format!("{c} cases per target"),
            (None, Some(s)) => format!("{s} s per target"),
            (None, None) => unreachable!("parse sets a budget"),
        }
    );
    let mut failed = false;
    let (mut executions, mut crashes, mut violations) = (0, 0, 0);
    for target in ALL.iter().filter(|t| names.iter().any(|n| n == t.name)) {
        let o = with_big_stack(|| (target.run)(&budget));
        let secs = o.elapsed.as_secs_f64();
        println!(
            "{:<13} {:>10} executions  {:>8.0}/s  {} crashes  {} violations  slowest {:.1} ms  ({secs:.1} s)",
            o.target,
            o.executions,
            o.executions as f64 / secs.max(1e-9),
            o.crashes,
            o.violations,
            o.slowest.as_secs_f64() * 1000.0,
        );
        if let Some(f) = &o.failure {
            println!("  {}", f.replace('\n', "\n  "));
        }
        executions += o.executions;
        crashes += o.crashes;
        violations += o.violations;
        failed |= !o.passed();
    }
    println!("total: {executions} executions, {crashes} crashes, {violations} violations");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn parse(args: &[String]) -> Result<(Vec<String>, Budget), String> {
    let mut names = vec!["all".to_string()];
    let mut budget = Budget {
        cases: None,
        seconds: None,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => names = value()?.split(',').map(str::to_string).collect(),
            "--cases" => {
                budget.cases = Some(value()?.parse().map_err(|_| "--cases takes a number")?)
            }
            "--seconds" => {
                let s: f64 = value()?.parse().map_err(|_| "--seconds takes a number")?;
                if s.is_nan() || s <= 0.0 {
                    return Err("--seconds must be positive".into());
                }
                budget.seconds = Some(s);
            }
            "--seed" => budget.seed = value()?.parse().map_err(|_| "--seed takes a number")?,
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if names.iter().any(|n| n == "all") {
        names = ALL.iter().map(|t| t.name.to_string()).collect();
    }
    if let Some(unknown) = names
        .iter()
        .find(|n| !ALL.iter().any(|t| t.name == n.as_str()))
    {
        return Err(format!("unknown target `{unknown}`"));
    }
    if budget.cases.is_none() && budget.seconds.is_none() {
        budget.cases = Some(1000);
    }
    Ok((names, budget))
}
