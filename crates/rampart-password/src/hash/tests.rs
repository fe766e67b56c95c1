use super::*;

/// Cheap parameters so tests stay fast; production uses [`Argon2Params::MIN`] or more.
const FAST: Argon2Params = Argon2Params { m_kib: 64, t: 1, p: 1 };

fn secret(s: &str) -> SecretString {
    SecretString::new(s)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[test]
fn default_params_are_the_minimum() {
    assert_eq!(Argon2Params::default(), Argon2Params { m_kib: 19_456, t: 2, p: 1 });
    assert_eq!(Argon2Params::default(), Argon2Params::MIN);
    assert!(Argon2Params::MIN.is_at_least_min());
    assert!(!FAST.is_at_least_min());
}

#[test]
fn hash_with_default_params_round_trips() {
    let params = Argon2Params::default();
    let pw = secret("correct horse battery staple");
    let stored = hash_password(&pw, &params).unwrap();
    assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
    let v = verify_password(&pw, &stored, &params).unwrap();
    assert_eq!(v, Verification { matched: true, needs_rehash: false });
    let wrong =
        verify_password(&secret("correct horse battery stapler"), &stored, &params).unwrap();
    assert!(!wrong.matched);
}

#[test]
fn hashes_of_the_same_password_use_different_salts() {
    let pw = secret("same password twice");
    let a = hash_password(&pw, &FAST).unwrap();
    let b = hash_password(&pw, &FAST).unwrap();
    assert_ne!(a, b);
    assert!(verify_password(&pw, &a, &FAST).unwrap().matched);
    assert!(verify_password(&pw, &b, &FAST).unwrap().matched);
}

#[test]
fn invalid_params_are_an_error() {
    let bad = Argon2Params { m_kib: 1, t: 0, p: 0 };
    assert!(matches!(hash_password(&secret("pw"), &bad), Err(PasswordError::InvalidParams(_))));
}

#[test]
fn argon2_hash_with_lower_params_needs_rehash() {
    let pw = secret("upgrade me please");
    let stored = hash_password(&pw, &FAST).unwrap();
    let current = Argon2Params { t: 2, ..FAST };
    let v = verify_password(&pw, &stored, &current).unwrap();
    assert!(v.matched);
    assert!(v.needs_rehash);
    let same = verify_password(&pw, &stored, &FAST).unwrap();
    assert!(same.matched && !same.needs_rehash);
}

#[test]
fn argon2i_and_argon2d_hashes_verify_and_need_rehash() {
    let pw = secret("older variant");
    let params = Params::new(FAST.m_kib, FAST.t, FAST.p, Some(OUTPUT_LEN)).unwrap();
    let salt = SaltString::encode_b64(&[7u8; SALT_LEN]).unwrap();
    for alg in [Algorithm::Argon2i, Algorithm::Argon2d] {
        let stored = Argon2::new(alg, Version::V0x13, params.clone())
            .hash_password(pw.expose_secret().as_bytes(), &salt)
            .unwrap()
            .to_string();
        let v = verify_password(&pw, &stored, &FAST).unwrap();
        assert_eq!(v, Verification { matched: true, needs_rehash: true }, "{stored}");
        assert!(!verify_password(&secret("older variant!"), &stored, &FAST).unwrap().matched);
    }
}

#[test]
fn bcrypt_hashes_verify_and_always_need_rehash() {
    let pw = secret("legacy bcrypt password");
    let stored_2b = bcrypt::hash(pw.expose_secret(), 4).unwrap();
    let parts = bcrypt::hash_with_result(pw.expose_secret(), 4).unwrap();
    let stored_2a = parts.format_for_version(bcrypt::Version::TwoA);
    let stored_2y = parts.format_for_version(bcrypt::Version::TwoY);
    for stored in [stored_2b, stored_2a, stored_2y] {
        let v = verify_password(&pw, &stored, &FAST).unwrap();
        assert_eq!(v, Verification { matched: true, needs_rehash: true }, "{stored}");
        let wrong = verify_password(&secret("legacy bcrypt passworD"), &stored, &FAST).unwrap();
        assert!(!wrong.matched);
    }
}

#[test]
fn bcrypt_rejects_passwords_longer_than_72_bytes() {
    let prefix = "a".repeat(72);
    let stored = bcrypt::hash(&prefix, 4).unwrap();
    // The 72-byte password itself is accepted.
    assert!(verify_password(&secret(&prefix), &stored, &FAST).unwrap().matched);
    // bcrypt alone would accept this longer password, since it ignores bytes past 72.
    let longer = format!("{prefix}-and-more");
    assert!(bcrypt::verify(&longer, &stored).unwrap());
    let v = verify_password(&secret(&longer), &stored, &FAST).unwrap();
    assert!(!v.matched);
}

#[test]
fn malformed_bcrypt_hash_is_an_error() {
    let err = verify_password(&secret("pw"), "$2b$04$tooshort", &FAST).unwrap_err();
    assert!(matches!(err, PasswordError::Bcrypt(_)), "{err:?}");
}

#[test]
fn legacy_sha256_hex_verifies_in_either_case_and_needs_rehash() {
    let pw = secret("legacy sha password");
    let lower = sha256_hex(pw.expose_secret());
    let upper = lower.to_uppercase();
    for stored in [lower, upper] {
        let v = verify_password(&pw, &stored, &FAST).unwrap();
        assert_eq!(v, Verification { matched: true, needs_rehash: true });
        assert!(!verify_password(&secret("legacy sha passwor"), &stored, &FAST).unwrap().matched);
    }
}

#[test]
fn passwords_are_not_trimmed_or_case_folded() {
    let argon = hash_password(&secret("pw"), &FAST).unwrap();
    let bcrypt_hash = bcrypt::hash("pw", 4).unwrap();
    let sha = sha256_hex("pw");
    for stored in [&argon, &bcrypt_hash, &sha] {
        assert!(verify_password(&secret("pw"), stored, &FAST).unwrap().matched);
        for variant in ["pw ", " pw", "PW", "pw\n", "p"] {
            assert!(
                !verify_password(&secret(variant), stored, &FAST).unwrap().matched,
                "{variant:?} matched {stored}"
            );
        }
    }
}

#[test]
fn unknown_formats_are_an_error_not_a_panic() {
    let cases = [
        "",
        "plaintext",
        "$1$abc$def",
        "$2x$04$abcdefghijklmnopqrstuu",
        "$argon2id$garbage",
        "$argon2xyz$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        &"g".repeat(64),
        &"a".repeat(63),
        &"a".repeat(65),
    ];
    for stored in cases {
        let result = verify_password(&secret("pw"), stored, &FAST);
        assert!(result.is_err(), "{stored:?} gave {result:?}");
    }
    assert!(matches!(
        verify_password(&secret("pw"), "plaintext", &FAST),
        Err(PasswordError::UnknownHashFormat)
    ));
}

#[test]
fn dummy_hash_takes_the_full_argon2id_path_with_the_same_params() {
    let dummy = dummy_hash(&FAST);
    let v = verify_password(&secret("anything"), &dummy, &FAST).unwrap();
    // Parsed as Argon2id with exactly the current parameters, and matched by nothing.
    assert_eq!(v, Verification { matched: false, needs_rehash: false });
    let real = hash_password(&secret("anything"), &FAST).unwrap();
    let real_prefix: Vec<_> = real.split('$').take(4).collect();
    let dummy_prefix: Vec<_> = dummy.split('$').take(4).collect();
    assert_eq!(real_prefix, dummy_prefix);
    let real_lens: Vec<_> = real.split('$').skip(4).map(str::len).collect();
    let dummy_lens: Vec<_> = dummy.split('$').skip(4).map(str::len).collect();
    assert_eq!(real_lens, dummy_lens);
    dummy_verify(&secret("anything"), &FAST);
}

#[test]
fn debug_output_never_shows_the_password() {
    let pw = secret("hunter2-do-not-print");
    let stored = hash_password(&pw, &FAST).unwrap();
    let v = verify_password(&pw, &stored, &FAST).unwrap();
    let shown = format!("{pw:?} {v:?} {FAST:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let err = verify_password(&pw, "nope", &FAST).unwrap_err();
    let shown = format!("{err:?} {err}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
