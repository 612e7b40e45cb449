//! `kube-sim --listen 127.0.0.1:PORT`: run the simulator until interrupted.

use kube_sim::{Sim, SimOptions};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: kube-sim [--listen ADDR] [--token TOKEN] [--eks-cluster NAME] \
[--eks-credential ACCESS_KEY_ID:SECRET] [--tick-ms N] [--nodes N] [--namespace NS]... [--deny VERB:RESOURCE[:NS]]... [--kubeconfig-out PATH]

  --listen ADDR            where to listen (default 127.0.0.1:8001; port 0 picks one)
  --token TOKEN            require `Authorization: Bearer TOKEN`
  --eks-cluster NAME       accept EKS tokens minted for cluster NAME
  --eks-credential ID:KEY  verify SigV4 signatures of EKS tokens from access key ID
  --tick-ms N              controller tick in milliseconds (default 100)
  --nodes N                pretend nodes (default 2)
  --namespace NS           create namespace NS at start (repeatable)
  --deny VERB:RESOURCE[:NS] forbid a verb on a resource (403, and `kubectl auth can-i` says no; repeatable)
  --kubeconfig-out PATH    write a kubeconfig pointing at the simulator";

fn parse(args: &[String]) -> Result<(SimOptions, Option<String>), String> {
    let mut opts = SimOptions {
        listen: "127.0.0.1:8001".parse().expect("valid address"),
        ..SimOptions::default()
    };
    let mut kubeconfig = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (flag.as_str(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--listen" => opts.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--token" => opts.token = Some(value()?),
            "--eks-cluster" => opts.eks_cluster = Some(value()?),
            "--eks-credential" => {
                let v = value()?;
                let (id, key) = v
                    .split_once(':')
                    .ok_or("--eks-credential wants ACCESS_KEY_ID:SECRET")?;
                opts.eks_credentials.push((id.to_string(), key.to_string()));
            }
            "--tick-ms" => {
                opts.tick =
                    Duration::from_millis(value()?.parse().map_err(|e| format!("--tick-ms: {e}"))?);
            }
            "--nodes" => opts.nodes = value()?.parse().map_err(|e| format!("--nodes: {e}"))?,
            "--namespace" => opts.namespaces.push(value()?),
            "--deny" => opts.denials.push(kube_sim::Denial::parse(&value()?)?),
            "--kubeconfig-out" => kubeconfig = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((opts, kubeconfig))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, kubeconfig) = match parse(&args) {
        Ok(p) => p,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kube-sim: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let sim = match Sim::start_blocking(opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "kube-sim: {e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = kubeconfig {
        if let Err(e) = sim.write_kubeconfig(&path) {
            eprintln!("kube-sim: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("kube-sim listening on {}", sim.url());
    loop {
        std::thread::park();
    }
}
