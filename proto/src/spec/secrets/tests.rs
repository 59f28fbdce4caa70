use crate::spec::{AppSpec, SecretPin, SpecError};

const MIN: &str =
    "name = \"web\"\nimage = \"registry.local/web\"\nlisten = 8080\ncontainer_port = 80\n";

fn parse(extra: &str) -> Result<AppSpec, SpecError> {
    AppSpec::from_toml(&format!("{MIN}{extra}"))
}

fn err(extra: &str) -> String {
    parse(extra).unwrap_err().to_string()
}

#[test]
fn secrets_parse_round_trip_and_are_named() {
    let s = parse(
        "[secrets]\nDB_PASSWORD = \"db-password\"\n[[secret_files]]\nname = \"tls-key\"\npath = \"/run/secrets/tls.key\"\nmode = 0o440\n[[secret_files]]\nname = \"db-password\"\npath = \"/run/secrets/db\"\n",
    )
    .unwrap();
    assert_eq!(s.secrets["DB_PASSWORD"], "db-password");
    assert_eq!(s.secret_files[0].mode, 0o440);
    assert_eq!(s.secret_files[1].mode, 0o400);
    assert_eq!(
        s.secret_names().into_iter().collect::<Vec<_>>(),
        ["db-password", "tls-key"]
    );
    assert_eq!(AppSpec::from_toml(&s.to_toml()).unwrap(), s);
    assert!(!AppSpec::from_toml(MIN)
        .unwrap()
        .to_toml()
        .contains("secret"));
}

#[test]
fn bad_secret_keys_are_named() {
    let e = err("[secrets]\n\"1BAD\" = \"x\"\n");
    assert!(e.contains("`secrets.1BAD`"), "{e}");
    let e = err("[env]\nDB = \"x\"\n[secrets]\nDB = \"db\"\n");
    assert!(e.contains("also set in `env`"), "{e}");
    let e = err("[secrets]\nDB = \"Db_Pass\"\n");
    assert!(e.contains("`Db_Pass` is not a secret name"), "{e}");
    let e = err("[[secret_files]]\nname = \"k\"\npath = \"run/k\"\n");
    assert!(e.contains("`secret_files[0].path`"), "{e}");
    let e = err("[[secret_files]]\nname = \"k\"\npath = \"/run/../etc/k\"\n");
    assert!(e.contains("without `..`"), "{e}");
    let e = err("[[secret_files]]\nname = \"k\"\npath = \"/k\"\n[[secret_files]]\nname = \"j\"\npath = \"/k\"\n");
    assert!(
        e.contains("`secret_files[1].path`: `/k` is mounted twice"),
        "{e}"
    );
    let e = err("[[secret_files]]\nname = \"k\"\npath = \"/k\"\nmode = 0o4755\n");
    assert!(e.contains("`secret_files[0].mode`"), "{e}");
    let e = err("[secret_versions.k]\nversion = 1\ndigest = \"sha256:zz\"\n");
    assert!(e.contains("`secret_versions.k.digest`"), "{e}");
}

#[test]
fn release_spec_pins_every_secret_and_only_those() {
    let mut s = parse("[secrets]\nDB = \"db\"\n").unwrap();
    let e = s.check_secret_pins().unwrap_err().to_string();
    assert!(e.contains("`secret_versions.db`: is missing"), "{e}");
    let pin = SecretPin {
        version: 2,
        digest: crate::seal::secret_digest(b"v"),
    };
    s.secret_versions.insert("db".into(), pin.clone());
    s.check_secret_pins().unwrap();
    s.validate().unwrap();
    s.secret_versions.insert("other".into(), pin);
    let e = s.check_secret_pins().unwrap_err().to_string();
    assert!(e.contains("`secret_versions.other`"), "{e}");
}
