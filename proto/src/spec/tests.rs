use super::*;

const MIN: &str =
    "name = \"web\"\nimage = \"127.0.0.1:5000/web\"\nlisten = 8080\ncontainer_port = 80\n";

#[test]
fn minimal_spec_gets_defaults() {
    let s = AppSpec::from_toml(MIN).unwrap();
    assert_eq!(s.protocol, Protocol::Http);
    assert_eq!(s.health.interval, defaults::HEALTH_INTERVAL);
    assert_eq!(s.swap.bake, defaults::BAKE);
    assert_eq!(s.rollout.batch_size, BatchSize::Count(1));
    let again = AppSpec::from_toml(&s.to_toml()).unwrap();
    assert_eq!(again, s);
}

#[test]
fn example_file_parses() {
    let text = include_str!("../../../deploy/examples/app.toml");
    AppSpec::from_toml(text).unwrap();
}

fn err(extra: &str) -> String {
    AppSpec::from_toml(&format!("{MIN}{extra}"))
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_specs_name_the_key() {
    assert!(err("colour = 1\n").contains("colour"));
    assert!(err("[health]\ninterval = \"soon\"\n").contains("interval"));
    assert!(err("[health]\ndeadline = \"0s\"\n").contains("health.deadline"));
    assert!(AppSpec::from_toml(&MIN.replace("8080", "70000"))
        .unwrap_err()
        .to_string()
        .contains("listen"));
    assert!(AppSpec::from_toml(&MIN.replace("8080", "0"))
        .unwrap_err()
        .to_string()
        .contains("`listen`"));
    let e = AppSpec::from_toml(&MIN.replace("\"web\"", "\"Web\""))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("name = \"Web\"") && e.contains("app `Web` is invalid"),
        "{e}"
    );
    assert!(AppSpec::from_toml(&MIN.replace("5000/web", "5000/web:v1"))
        .unwrap_err()
        .to_string()
        .contains("`image`"));
    assert!(
        err("[[volumes]]\nhost = \"data\"\ncontainer = \"/data\"\n").contains("volumes[0].host")
    );
    assert!(
        err("[[volumes]]\nname = \"PG_data\"\ncontainer = \"/data\"\n").contains("volumes[0].name")
    );
    assert!(err("[[volumes]]\ncontainer = \"/data\"\n").contains("exactly one"));
    assert!(err("seccomp = \"profile.json\"\n").contains("seccomp"));
    assert!(err("[dns]\nsearch = [\"a b\"]\n").contains("dns.search[0]"));
    assert!(err("[rollout]\nbatch_size = \"lots\"\n").contains("rollout.batch_size"));
    assert!(err("[health]\nkind = \"exec\"\n").contains("health.command"));
    assert!(err("[swap]\nmax_error_rate = 2.0\n").contains("swap.max_error_rate"));
    assert!(err("[resources]\ncpus = -1.0\n").contains("resources.cpus"));
}

#[test]
fn tcp_apps_check_health_by_connecting_unless_told() {
    let tcp = MIN.replace("container_port", "protocol = \"tcp\"\ncontainer_port");
    assert_eq!(
        AppSpec::from_toml(&tcp).unwrap().health.kind,
        HealthKind::Tcp
    );
    let told = format!("{tcp}[health]\nkind = \"http\"\n");
    assert_eq!(
        AppSpec::from_toml(&told).unwrap().health.kind,
        HealthKind::Http
    );
    assert_eq!(
        AppSpec::from_toml(MIN).unwrap().health.kind,
        HealthKind::Http
    );
}

#[test]
fn container_keys_parse_and_round_trip() {
    let s = AppSpec::from_toml(&format!(
        "{MIN}read_only = true\nseccomp = \"unconfined\"\n[dns]\nservers = [\"10.0.0.2\"]\n[[volumes]]\nname = \"pgdata\"\ncontainer = \"/var/lib/postgresql/data\"\n"
    ))
    .unwrap();
    assert!(s.read_only);
    assert_eq!(s.seccomp, Seccomp::Unconfined);
    assert_eq!(s.volumes[0].name.as_deref(), Some("pgdata"));
    assert_eq!(AppSpec::from_toml(&s.to_toml()).unwrap(), s);
    let min = AppSpec::from_toml(MIN).unwrap();
    assert!(!min.read_only && min.seccomp == Seccomp::Default);
    assert!(!min.to_toml().contains("seccomp"));
}

#[test]
fn batch_sizes() {
    assert_eq!(BatchSize::Percent("25%".into()).hosts(10), 3);
    assert_eq!(BatchSize::Count(5).hosts(2), 2);
    assert_eq!(BatchSize::Count(1).hosts(0), 1);
}

#[test]
fn capabilities_are_checked_by_name() {
    let base = "name = \"web\"\nimage = \"r/web\"\nlisten = 8080\ncontainer_port = 80\n";
    let s = AppSpec::from_toml(&format!(
        "{base}cap_add = [\"NET_RAW\", \"cap_sys_ptrace\"]\ncap_drop = [\"ALL\"]\n"
    ))
    .unwrap();
    assert_eq!(s.cap_add, ["NET_RAW", "cap_sys_ptrace"]);
    let err = AppSpec::from_toml(&format!("{base}cap_add = [\"NET_RAWW\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cap_add") && err.contains("NET_RAWW"), "{err}");
    let err = AppSpec::from_toml(&format!("{base}cap_add = [\"ALL\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cap_add"), "{err}");
}
