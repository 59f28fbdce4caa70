use super::*;

#[test]
fn clean_paths() {
    assert_eq!(clean(b"./a/./b/", 100).unwrap(), PathBuf::from("a/b"));
    assert_eq!(clean(b"./", 100).unwrap(), PathBuf::new());
    assert_eq!(
        clean(b"a/../../x", 100).unwrap_err(),
        "escapes the root (`..`)"
    );
    assert_eq!(
        clean(b"/etc/passwd", 100).unwrap_err(),
        "is an absolute path"
    );
    assert!(clean(&[b'a'; 101], 100).is_err());
}

#[test]
fn caps_uncompressed_bytes() {
    let mut r = HashingReader::new(&[0u8; 100][..], 10);
    let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
    assert!(err.get_ref().unwrap().is::<CapExceeded>());
}
