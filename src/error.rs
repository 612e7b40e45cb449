//! Rendering an error for people: the error and each of its causes, one per line. Every stage
//! turns its failures into text through here, once, where the text is shown.

/// An error and its causes, one per line.
pub fn render_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!("\n  caused by: {c}"));
        cause = c.source();
    }
    out
}

/// What to do when an address on loopback refused the connection inside the action's
/// container; `None` for any other error. The container runs on a Docker bridge network, so
/// `127.0.0.1` there is the container itself, not the runner that hosts the registry or cluster.
pub fn loopback_refused_hint(message: &str) -> Option<&'static str> {
    let refused = message.to_ascii_lowercase().contains("connection refused");
    (refused && names_loopback(message)).then_some(
        "the address is on loopback, and inside the action's container loopback is the \
         container itself, not the runner: reach a registry or cluster of the job through its \
         service container's name (`services:`, e.g. `registry:5000`) or the runner's address \
         on the Docker bridge (usually 172.17.0.1), or run the monoship CLI in a `run:` step",
    )
}

/// Whether `text` names a loopback host: `localhost`, `[::1]` or `127.x.x.x`.
fn names_loopback(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("localhost")
        || lower.contains("[::1]")
        || lower.match_indices("127.").any(|(at, _)| {
            let before = lower[..at].chars().next_back();
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_loopback_address_gets_the_container_hint_and_nothing_else_does() {
        let refused = |host: &str| {
            format!("cannot reach the registry {host}\n  caused by: tcp connect error\n  caused by: Connection refused (os error 111)")
        };
        for host in [
            "127.0.0.1:5000",
            "localhost:5000",
            "http://[::1]:6443",
            "https://127.0.1.1",
        ] {
            assert!(loopback_refused_hint(&refused(host)).is_some(), "{host}");
        }
        for host in [
            "10.0.0.7:5000",
            "registry:5000",
            "v1.127.3",
            "host127.example",
        ] {
            assert!(loopback_refused_hint(&refused(host)).is_none(), "{host}");
        }
        assert!(loopback_refused_hint("127.0.0.1:5000: 401 Unauthorized").is_none());
    }
}
