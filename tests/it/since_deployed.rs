//! `ship` compares each service from the commit its workloads run: the changes of a push
//! whose run never happened ship with the next one. Real git, Docker, registry and the
//! Kubernetes simulator.

use serde_json::Value;

use crate::ship::{deployment, image_of, setup, wait_rolled_out, Env};
use crate::support::{fixture, run_action, ActionRun};

/// The action on GitHub's `push` of `before..after` to main, shipping to `env`.
fn ship_push(env: &Env, before: &str, after: &str) -> ActionRun {
    let mut payload = fixture("push.json");
    payload["before"] = Value::from(before);
    payload["after"] = Value::from(after);
    payload["ref"] = Value::from("refs/heads/main");
    for flag in ["created", "deleted", "forced"] {
        payload[flag] = Value::from(false);
    }
    let kubeconfig = env.kubeconfig.path().display().to_string();
    run_action(
        env.repo.path(),
        "push",
        &payload,
        after,
        &[
            ("INPUT_COMMAND", "ship"),
            ("INPUT_REGISTRY", &env.registry.addr),
            ("INPUT_KUBECONFIG", &kubeconfig),
            ("INPUT_TIMEOUT", "60"),
        ],
    )
}

/// Records on `name`'s Deployment that it runs `commit`.
fn runs_commit(env: &Env, name: &str, commit: &str) {
    let image = format!("{}/{name}:old", env.registry.addr);
    let annotation = format!("    monoship.dev/commit: {commit}\n");
    env.sim
        .apply_yaml(&deployment(name, &image, &annotation))
        .unwrap();
    wait_rolled_out(&env.sim, name);
}

/// Push A changes email and its run never happens; push B changes cart. The run for B ships
/// both: email runs a commit older than A, and its inputs changed since.
#[test]
fn the_run_of_a_push_ships_what_an_earlier_push_left_unshipped() {
    let mut env = setup(None);
    let deployed = env.repo.git(&["rev-parse", "HEAD"]);
    for name in ["cart", "email"] {
        runs_commit(&env, name, &deployed);
    }
    env.repo.write("src/email/main.go", "package main // A\n");
    let a = env.repo.commit("email: A, whose run never happens");
    env.repo.write("src/cart/main.go", "package main // B\n");
    let b = env.repo.commit("cart: B");

    let r = ship_push(&env, &a, &b);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    let deployed_now: Vec<String> = serde_json::from_str(r.output("deployed")).unwrap();
    // frontend depends on cart.
    assert_eq!(
        deployed_now,
        ["cart", "email", "frontend"],
        "{}",
        r.run.stderr
    );
    for name in ["cart", "email"] {
        let d = env.sim.get("deployments", "shop", name).unwrap().unwrap();
        assert_eq!(
            d["metadata"]["annotations"]["monoship.dev/commit"],
            b.as_str()
        );
        assert!(
            image_of(&env, name).contains("@sha256:"),
            "{name} runs the new image"
        );
    }
    let since = format!("since deployed {}", &deployed[..7]);
    let email = r
        .summary
        .lines()
        .find(|l| l.starts_with("| email "))
        .unwrap_or_else(|| panic!("{}", r.summary));
    assert!(email.contains(&since), "{email}");
    assert!(
        r.run.stderr.contains(
            "no deployed commit is recorded on the workloads of checkout, frontend; compared over the event's range only"
        ),
        "{}",
        r.run.stderr
    );
}

/// A recorded commit the clone does not have (or that is not in the head's history) leaves
/// the service on the event's range, and the plan says so.
#[test]
fn a_deployed_commit_outside_the_history_keeps_the_event_range() {
    let mut env = setup(None);
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    runs_commit(&env, "email", unknown);
    let a = env.repo.git(&["rev-parse", "HEAD"]);
    env.repo.write("src/cart/main.go", "package main // B\n");
    let b = env.repo.commit("cart: B");

    let r = ship_push(&env, &a, &b);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    let deployed_now: Vec<String> = serde_json::from_str(r.output("deployed")).unwrap();
    assert_eq!(deployed_now, ["cart", "frontend"], "{}", r.run.stderr);
    assert!(
        r.run
            .stderr
            .contains("email runs 0123456, which is not in this clone"),
        "{}",
        r.run.stderr
    );
    assert!(image_of(&env, "email").ends_with("/email:old"));
}
