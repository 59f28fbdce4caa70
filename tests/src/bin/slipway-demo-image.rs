//! `slipway-demo-image`: builds the demo app (busybox httpd serving one page) and pushes it to
//! a registry over plain HTTP; prints the digest-pinned reference. Used by deploy/quickstart
//! and the benchmarks.

use slipway_tests::image::busybox_httpd_image;

const USAGE: &str = "usage: slipway-demo-image REGISTRY_ADDR REPO TAG PAGE_TEXT
  Pushes a busybox httpd image serving PAGE_TEXT at / on port 80 to
  http://REGISTRY_ADDR/REPO:TAG and prints REGISTRY_ADDR/REPO@sha256:...";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 4 || args[0] == "--help" || args[0] == "-h" {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(2);
    }
    match busybox_httpd_image(&args[3]).push(&args[0], &args[1], &args[2]) {
        Ok(p) => {
            println!("{}", p.image_ref());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: pushing {}/{}:{}: {e:#}", args[0], args[1], args[2]);
            std::process::ExitCode::FAILURE
        }
    }
}
