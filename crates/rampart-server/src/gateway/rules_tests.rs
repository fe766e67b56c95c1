use super::*;

fn rules(toml_text: &str) -> AccessRules {
    let table: toml::Table = toml_text.parse().unwrap();
    AccessRules::new(parse_section(table.get("access_rules")).unwrap())
}

fn user(role: Role) -> AuthenticatedUser {
    AuthenticatedUser {
        user_id: "u_1".into(),
        email: "a@example.com".into(),
        role,
        session_handle: Some("h".into()),
        authenticated_at: time::OffsetDateTime::UNIX_EPOCH,
        method: crate::auth::AuthMethod::Session,
        api_key_id: None,
    }
}

const SAMPLE: &str = r#"
[[access_rules.rule]]
name = "health"
paths = ["/healthz"]
methods = ["get"]
policy = "public"

[[access_rules.rule]]
name = "assets"
host = "app.example.com"
paths = ["/static/**", "/img/*.png"]
policy = "public"

[[access_rules.rule]]
name = "admin"
hosts = ["*.example.com"]
path = "/admin"
policy = "role:admin"

[[access_rules.rule]]
name = "reports"
path = "/reports/"
policy = "role:user"

[[access_rules.rule]]
name = "hooks"
path = "/hooks"
policy = "authenticated"
csrf = false

[[access_rules.rule]]
name = "secret"
path = "/internal"
policy = "deny"
"#;

#[test]
fn decides_by_first_matching_rule_and_denies_by_default() {
    let r = rules(SAMPLE);
    let admin = user(Role::Admin);
    let plain = user(Role::User);
    let get = Method::GET;
    let forbidden = |rule: &str| Decision::Forbidden { rule: rule.to_owned() };
    let cases: &[(&str, &str, &Method, Option<&AuthenticatedUser>, Decision)] = &[
        ("any.host", "/healthz", &get, None, Decision::Allow),
        ("any.host", "/healthz", &Method::POST, None, Decision::Unauthenticated),
        ("app.example.com", "/static/a/b.css", &get, None, Decision::Allow),
        ("APP.Example.com:8443", "/static/x", &get, None, Decision::Allow),
        ("app.example.com.", "/img/logo.png", &get, None, Decision::Allow),
        ("app.example.com", "/img/a/logo.png", &get, None, Decision::Unauthenticated),
        ("other.example.org", "/static/x", &get, None, Decision::Unauthenticated),
        ("a.example.com", "/admin", &get, Some(&admin), Decision::Allow),
        ("a.example.com", "/admin/users", &get, Some(&plain), forbidden("admin")),
        ("a.example.com", "/admin/users", &get, None, Decision::Unauthenticated),
        ("example.com", "/admin/users", &get, Some(&plain), Decision::Allow),
        ("a.example.com", "/administrator", &get, Some(&plain), Decision::Allow),
        ("x", "/reports/q1", &get, Some(&plain), Decision::Allow),
        ("x", "/reports/q1", &get, Some(&admin), Decision::Allow),
        ("x", "/reports", &get, Some(&plain), Decision::Allow),
        ("x", "/internal/x", &get, Some(&admin), forbidden("secret")),
        ("x", "/internal", &get, None, forbidden("secret")),
        ("x", "/anything", &get, None, Decision::Unauthenticated),
        ("x", "/anything", &get, Some(&plain), Decision::Allow),
    ];
    for (host, path, method, who, want) in cases {
        assert_eq!(r.decide(host, path, method, *who), *want, "{host} {method} {path}");
    }
}

#[test]
fn path_tricks_meet_the_rules_of_the_path_they_resolve_to() {
    let r = rules(SAMPLE);
    let plain = user(Role::User);
    let forbidden = Decision::Forbidden { rule: "admin".into() };
    for path in [
        "/admin/x",
        "//admin/x",
        "/./admin/x",
        "/%61dmin/x",
        "/static/../admin/x",
        "/static%2f..%2fadmin/x",
        "/static/%2e%2e/admin/x",
        "/admin;x/y",
        "/admin/x?y=1",
        "\\admin\\x",
        "/static\\..\\admin",
    ] {
        assert_eq!(
            r.decide("a.example.com", path, &Method::GET, Some(&plain)),
            forbidden,
            "{path}"
        );
    }
    for path in ["/admin%00", "/a%0d%0aX", "/%ff%fe"] {
        assert_eq!(
            r.decide("a.example.com", path, &Method::GET, Some(&plain)),
            Decision::Forbidden { rule: INVALID_PATH.into() },
            "{path}"
        );
    }
}

#[test]
fn normalizes_paths() {
    for (raw, want) in [
        ("", "/"),
        ("/", "/"),
        ("/a/b/", "/a/b/"),
        ("/a/./b", "/a/b"),
        ("/a/../../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/a//b", "/a/b"),
        ("/a%2Fb", "/a/b"),
        ("/a%zzb", "/a%zzb"),
        ("/a;jsessionid=1/b", "/a/b"),
        ("/a?x=/admin#f", "/a"),
    ] {
        assert_eq!(normalize_path(raw).as_deref(), Some(want), "{raw}");
    }
}

#[test]
fn globs_match_within_and_across_segments() {
    let p = PathPattern::parse("/a/*/c").unwrap();
    assert!(p.matches("/a/b/c"));
    assert!(p.matches("/a//c"));
    assert!(!p.matches("/a/b/x/c"));
    let p = PathPattern::parse("/a/**/c").unwrap();
    assert!(p.matches("/a/b/x/c"));
    assert!(!p.matches("/a/b/x/d"));
    let p = PathPattern::parse("/files/*.pdf").unwrap();
    assert!(p.matches("/files/report.pdf"));
    assert!(!p.matches("/files/x/report.pdf"));
    let p = PathPattern::parse("/**").unwrap();
    assert!(p.matches("/"));
    assert!(p.matches("/any/thing"));
}

#[test]
fn csrf_applies_to_unsafe_methods_unless_the_rule_opts_out() {
    let r = rules(SAMPLE);
    assert!(r.csrf_applies("x", "/anything", &Method::POST));
    assert!(!r.csrf_applies("x", "/anything", &Method::GET));
    assert!(!r.csrf_applies("x", "/hooks/github", &Method::POST));
    assert!(r.csrf_applies("x", "/reports/x", &Method::DELETE));
    assert!(r.csrf_applies("x", "/a%00", &Method::POST));
}

#[test]
fn bad_rules_are_config_errors_naming_access_rules() {
    for bad in [
        "[[access_rules.rule]]\npolicy = \"maybe\"",
        "[[access_rules.rule]]\npolicy = \"role:editor\"",
        "[[access_rules.rule]]\npolicy = \"public\"\npath = \"static\"",
        "[[access_rules.rule]]\npolicy = \"public\"\npath = \"/a/***\"",
        "[[access_rules.rule]]\npolicy = \"public\"\nhost = \"*.\"",
        "[[access_rules.rule]]\npolicy = \"public\"\nhost = \"a.*.com\"",
        "[[access_rules.rule]]\npolicy = \"public\"\nmethods = [\"GE T\"]",
        "[[access_rules.rule]]\npolicy = \"public\"\npaht = \"/x\"",
        "[[access_rules.rule]]\npath = \"/x\"",
        "[access_rules]\nrules = 1",
    ] {
        let table: toml::Table = bad.parse().unwrap();
        let err = parse_section(table.get("access_rules")).unwrap_err();
        assert_eq!(err.setting, SETTING, "{bad}: {err}");
    }
}

#[test]
fn rules_without_names_are_numbered() {
    let r = rules("[[access_rules.rule]]\npolicy = \"public\"\n[[access_rules.rule]]\npolicy = \"deny\"\npath = \"/x\"");
    assert_eq!(r.rules()[1].name, "rule-2");
    assert!(r.rules()[0].csrf);
}

#[test]
fn refusing_rules_match_any_letter_case_and_granting_rules_only_their_own() {
    let r = rules(SAMPLE);
    let plain = user(Role::User);
    let host = "app.example.com";
    let forbidden = |rule: &str| Decision::Forbidden { rule: rule.to_owned() };
    for path in ["/ADMIN", "/Admin/panel", "/aDmIn/x?y=1", "/%41dmin/x", "/ADMIN;x/y"] {
        assert_eq!(r.decide(host, path, &Method::GET, Some(&plain)), forbidden("admin"), "{path}");
        assert_eq!(r.decide(host, path, &Method::GET, None), Decision::Unauthenticated, "{path}");
    }
    for path in ["/INTERNAL", "/Internal/x"] {
        assert_eq!(r.decide(host, path, &Method::GET, Some(&plain)), forbidden("secret"), "{path}");
    }
    // A public rule grants only the case it names: other spellings fall to the default.
    assert_eq!(r.decide(host, "/static/a.css", &Method::GET, None), Decision::Allow);
    assert_eq!(r.decide(host, "/STATIC/a.css", &Method::GET, None), Decision::Unauthenticated);
    assert_eq!(r.decide(host, "/HEALTHZ", &Method::GET, None), Decision::Unauthenticated);
}

proptest::proptest! {
    /// The copy-free answers for paths and hosts that are already normal are exactly what the
    /// full normalization gives.
    #[test]
    fn already_normal_paths_and_hosts_read_as_the_full_normalization_reads_them(
        parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "/", "//", "a", "B", "0", "-", "_", "~", ".", "..", "%2e", "%2F", "%", ";x=1",
                "\\", "?q=/a", "#f", "é", " ", "\t", ":", "@", "*",
            ]),
            0..10,
        ),
    ) {
        let raw = parts.concat();
        let path = raw.split(['?', '#']).next().unwrap_or("");
        proptest::prop_assert_eq!(normalize_path(&raw).map(Cow::into_owned), normalize_path_slow(path));
        proptest::prop_assert_eq!(normalize_host(&raw).into_owned(), normalize_host_slow(&raw));
    }
}

#[test]
fn normal_paths_and_hosts_are_not_copied() {
    for p in ["/", "/a/b", "/a/b/", "/api/v1/x.json", "/a-b_c~d/e.f"] {
        assert!(matches!(normalize_path(p), Some(Cow::Borrowed(b)) if b == p), "{p}");
    }
    assert!(matches!(normalize_path("/a?x=1"), Some(Cow::Borrowed("/a"))));
    for p in ["/a//b", "/a/./b", "/a/..", "/A%2e", "a", "", "/a;b"] {
        assert!(matches!(normalize_path(p), Some(Cow::Owned(_)) | None), "{p}");
    }
    assert!(matches!(normalize_host("app.example.com"), Cow::Borrowed("app.example.com")));
    assert_eq!(normalize_host("App.Example.com:8443"), "app.example.com");
    assert_eq!(normalize_host("example.com."), "example.com");
}
