//! The bundled example shop (examples/shop), planned the way examples/demo.sh does.

use crate::support::{example_shop as shop, plan_json};

#[test]
fn each_kind_of_change_in_the_example_selects_the_right_services() {
    let cases: &[(&str, &[&str])] = &[
        ("pb/demo.proto", &["cart", "checkout", "frontend"]),
        ("libs/common/logging.go", &["cart", "frontend"]),
        ("src/cart/main.go", &["cart", "frontend"]),
        ("src/cart/README.md", &[]),
        ("src/frontend/README.md", &[]),
        ("src/frontend/static/index.html", &["frontend"]),
        ("src/frontend/Dockerfile.dockerignore", &["frontend"]),
        ("src/email/README.md", &[]),
        ("src/email/templates/welcome.txt", &["email"]),
        ("src/email/.dockerignore", &["email"]),
        ("deploy/checkout/deployment.yaml", &["checkout"]),
        ("deploy/checkout/README.md", &[]),
        ("src/checkout/app.txt", &["checkout"]),
    ];
    let (mut repo, base) = shop();
    for (path, want) in cases {
        repo.git(&["reset", "-q", "--hard", &base]);
        repo.write(path, "changed\n");
        repo.commit(path);
        let run = plan_json(repo.path(), &["--base", &base]);
        assert_eq!(run.code, 0, "{path}: {}", run.stderr);
        assert_eq!(
            run.changed(),
            want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "changing {path}"
        );
    }
}

#[test]
fn the_example_plan_has_the_spec_shape() {
    let (mut repo, base) = shop();
    repo.write("pb/demo.proto", "syntax = \"proto3\"; // v2\n");
    let head = repo.commit("protos");
    let plan = plan_json(repo.path(), &["--base", &base]).json();
    assert_eq!(plan["base"], base.as_str());
    assert_eq!(plan["head"], head.as_str());
    assert_eq!(plan["source"], "git");
    assert_eq!(
        plan["changed"],
        serde_json::json!(["cart", "checkout", "frontend"])
    );
    let services = plan["services"].as_array().unwrap();
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cart", "checkout", "email", "frontend"]);
    for s in services {
        assert!(s["changed"].is_boolean() && s["reasons"].is_array(), "{s}");
        for r in s["reasons"].as_array().unwrap() {
            assert!(r["path"].is_string() && r["rule"].is_string(), "{r}");
        }
    }
    let cart = &services[0];
    assert_eq!(cart["reasons"][0]["path"], "pb/demo.proto");
    let checkout = &services[1];
    assert_eq!(checkout["reasons"][0]["rule"], "depends_on proto");
}
