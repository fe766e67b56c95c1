//! Parsers for setting values.

use std::time::Duration;

/// Parses `500ms`, `2s`, `30m`, `12h`, `7d` (a bare number is seconds).
pub fn duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs);
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => None,
    }
}

/// Formats a duration the way it is configured (`90s`, `30m`, `12h`).
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        format!("{}ms", d.as_millis())
    } else if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Parses a boolean (`true/false`, `1/0`, `yes/no`, `on/off`).
pub fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Splits a comma-separated list, trimming and dropping empty items.
pub fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Hides the secrets of a URL: the password in `scheme://user:pass@host/…`, and the value of
/// every query parameter whose name suggests a secret (`password`, `sslpassword`, `token`, …),
/// since database drivers also take credentials there.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[redacted]".to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let mut out = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:[redacted]@{host}")
        }
        None => format!("{scheme}://{rest}"),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if secret_param(name) => format!("{name}=[redacted]"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "key", "auth"].iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(duration("12h"), Some(Duration::from_secs(43_200)));
        assert_eq!(duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(duration("45"), Some(Duration::from_secs(45)));
        for bad in ["", "m", "5x", "-1s", "1.5h", "99999999999999999999d"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
        assert_eq!(fmt_duration(Duration::from_secs(43_200)), "12h");
        assert_eq!(fmt_duration(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact_url("postgres://u:hunter2@db:5432/x"),
            "postgres://u:[redacted]@db:5432/x"
        );
        assert_eq!(redact_url("redis://:pw@h:6379/0"), "redis://:[redacted]@h:6379/0");
        assert_eq!(redact_url("sqlite://./data.db"), "sqlite://./data.db");
        assert_eq!(
            redact_url("postgres://db/x?user=u&password=hunter2&sslmode=require"),
            "postgres://db/x?user=u&password=[redacted]&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u:pw@db/x?sslpassword=s3&PassWord=p&application_name=a"),
            "postgres://u:[redacted]@db/x?sslpassword=[redacted]&PassWord=[redacted]&application_name=a"
        );
        assert_eq!(redact_url("sqlite://./d.db?mode=rwc"), "sqlite://./d.db?mode=rwc");
    }
}
