//! Durations written like `30s`, `5m`, `1h30m`, `500ms`.

use std::time::Duration;

/// Parses a duration; the error says what is accepted.
pub fn parse(s: &str) -> Result<Duration, String> {
    let err = || format!("`{s}` is not a duration; write e.g. `30s`, `5m`, `1h30m` or `500ms`");
    let s = s.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        // Too large to hold (a duration of billions of years) is as wrong as any other typo.
        let too_long = || format!("`{s}` is too long a duration");
        let secs = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
        let unit = match &rest[..unit_len] {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => secs(60),
            "h" => secs(3600),
            "d" => secs(86400),
            _ => return Err(err()),
        }
        .ok_or_else(too_long)?;
        total = total.checked_add(unit).ok_or_else(too_long)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Writes a duration the way [`parse`] reads it: `10m`, `1h30m`, `45s`, `500ms`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_duration_too_long_to_hold_is_an_error_not_a_panic() {
        for d in [
            "18446744073709551615s1s",
            "213503982334602d",
            "99999999999999999999h",
        ] {
            assert!(parse(d).is_err(), "{d}");
        }
    }
    use super::*;

    #[test]
    fn a_formatted_duration_reads_back() {
        for (d, text) in [
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(45), "45s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text).unwrap(), d);
        }
    }

    #[test]
    fn compound_durations_parse() {
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
    }

    #[test]
    fn nonsense_is_rejected_with_advice() {
        for bad in ["", "5", "m5", "5 minutes", "1.5h"] {
            assert!(parse(bad).unwrap_err().contains("write e.g."), "{bad}");
        }
    }
}
