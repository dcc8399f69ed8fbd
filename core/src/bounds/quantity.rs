//! Kubernetes quantities (`500m`, `2`, `512Mi`, `1G`), as the bounds compare them.

/// Parses a Kubernetes quantity (`500m`, `2`, `512Mi`, `1G`) as a number of units.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("m", 1e-3),
        ("k", 1e3),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("", 1.0),
    ];
    suffixes.iter().find_map(|(s, factor)| {
        let number = q.strip_suffix(s)?;
        let n: f64 = number.parse().ok()?;
        (n.is_finite() && n >= 0.0).then_some(n * factor)
    })
}
