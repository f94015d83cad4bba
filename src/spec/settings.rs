//! One PostgreSQL setting as an image's catalog describes it (from
//! `pg_settings` at image build time, see `images/describe-settings.sh`), and
//! whether a value is one PostgreSQL would take: the type, units as
//! PostgreSQL spells them (`1GB`, `200ms`; memory units are powers of 1024
//! and case-sensitive), the range after conversion to the setting's own unit
//! (rounded, as PostgreSQL rounds), enum values (case-insensitive).

use super::values::ConfValue;
use serde::Deserialize;

/// The type of a setting (`pg_settings.vartype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettingKind {
    /// `on`/`off`.
    Bool,
    /// A whole number, maybe with a unit.
    Integer,
    /// A decimal number, maybe with a unit.
    Real,
    /// Free text.
    String,
    /// One of `values`.
    Enum,
}

/// One setting of an image's catalog.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Setting {
    /// The name as PostgreSQL spells it (`shared_buffers`, `TimeZone`, `cron.database_name`).
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: SettingKind,
    /// The unit a bare number counts in (`8kB`, `kB`, `ms`, `s`, `min`).
    #[serde(default)]
    pub unit: Option<String>,
    /// The lowest value, in `unit`.
    #[serde(default)]
    pub min: Option<f64>,
    /// The highest value, in `unit`.
    #[serde(default)]
    pub max: Option<f64>,
    /// The values of an enum.
    #[serde(default)]
    pub values: Vec<String>,
    /// When a change takes effect: `postmaster` (restart), `sighup` (reload),
    /// `superuser`, `user`, `backend`, `internal` (never settable), ...
    pub context: String,
    /// The module that defines it; `None` for the server's own settings.
    #[serde(default)]
    pub library: Option<String>,
}

impl Setting {
    /// Whether a change takes a restart of the server.
    pub fn needs_restart(&self) -> bool {
        self.context == "postmaster"
    }
}

const MEMORY: &[(&str, f64)] = &[
    ("B", 1.0),
    ("kB", 1024.0),
    ("MB", 1048576.0),
    ("GB", 1073741824.0),
    ("TB", 1099511627776.0),
];
const TIME: &[(&str, f64)] = &[
    ("us", 0.001),
    ("ms", 1.0),
    ("s", 1000.0),
    ("min", 60000.0),
    ("h", 3600000.0),
    ("d", 86400000.0),
];

/// What a setting's unit measures, and its size in bytes or milliseconds.
fn unit_scale(unit: &str) -> Option<(&'static [(&'static str, f64)], f64)> {
    let digits = unit.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
    let (count, name) = unit.split_at(digits);
    let count: f64 = if count.is_empty() {
        1.0
    } else {
        count.parse().ok()?
    };
    for table in [MEMORY, TIME] {
        if let Some((_, m)) = table.iter().find(|(u, _)| *u == name) {
            return Some((table, count * m));
        }
    }
    None
}

/// A number as PostgreSQL's `parse_int`/`parse_real` read it, and what follows.
fn number_prefix(s: &str) -> Option<(f64, &str)> {
    let t = s.trim_start();
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let end = hex
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(hex.len());
        let v = i64::from_str_radix(&hex[..end], 16).ok()? as f64;
        return Some((if neg { -v } else { v }, &hex[end..]));
    }
    let bytes = body.as_bytes();
    let mut end = 0;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    if end < bytes.len() && bytes[end] == b'.' {
        end += 1;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
    }
    if end > 0 && end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
        let mut e = end + 1;
        if e < bytes.len() && (bytes[e] == b'+' || bytes[e] == b'-') {
            e += 1;
        }
        let start = e;
        while e < bytes.len() && bytes[e].is_ascii_digit() {
            e += 1;
        }
        if e > start {
            end = e;
        }
    }
    let v: f64 = body[..end].parse().ok()?;
    Some((if neg { -v } else { v }, &body[end..]))
}

fn is_bool_word(s: &str) -> Option<bool> {
    let l = s.trim().to_ascii_lowercase();
    let prefix_of = |w: &str| !l.is_empty() && w.starts_with(l.as_str());
    match l.as_str() {
        "on" | "1" => Some(true),
        "off" | "of" | "0" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

/// A limit in the setting's unit, written in the largest unit that keeps it
/// whole, with the largest unit's rounded value beside it when that differs.
fn show(v: f64, unit: Option<&str>) -> String {
    let Some((table, scale)) = unit.and_then(unit_scale) else {
        return trim_float(v);
    };
    let base = v * scale;
    let fits = |m: f64| base != 0.0 && (base / m).abs() >= 1.0;
    let exact = table
        .iter()
        .rev()
        .find(|(_, m)| fits(*m) && (base / m).fract() == 0.0)
        .map_or_else(
            || format!("{}{}", trim_float(v), unit.unwrap_or_default()),
            |(u, m)| format!("{}{u}", trim_float(base / m)),
        );
    match table.iter().rev().find(|(_, m)| fits(*m)) {
        Some((u, m)) if !exact.ends_with(u) || (base / m).fract() != 0.0 => {
            format!("{exact} (about {}{u})", (base / m).round())
        }
        _ => exact,
    }
}

fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn units_of(table: &[(&str, f64)]) -> String {
    table.iter().map(|(u, _)| *u).collect::<Vec<_>>().join(", ")
}

/// Checks one value against the setting; the error says what it takes.
pub fn check_value(s: &Setting, value: &ConfValue) -> Result<(), String> {
    let name = &s.name;
    let text = value.to_string();
    match s.kind {
        SettingKind::String => Ok(()),
        SettingKind::Bool => match value {
            ConfValue::Bool(_) => Ok(()),
            _ if is_bool_word(&text).is_some() => Ok(()),
            _ => Err(format!(
                "`{name}` takes on or off (also true/false, yes/no, 1/0), not \"{text}\""
            )),
        },
        SettingKind::Enum => {
            let ok = s.values.iter().any(|v| v.eq_ignore_ascii_case(text.trim()))
                // Enums that take on/off also take the other boolean
                // spellings, which pg_settings does not list.
                || (s.values.iter().any(|v| v == "on") && is_bool_word(&text).is_some());
            if ok {
                return Ok(());
            }
            let hint = super::decode::did_you_mean(&text, s.values.iter().map(String::as_str))
                .map(|v| format!(" (did you mean `{v}`?)"))
                .unwrap_or_default();
            Err(format!(
                "`{name}` takes one of {}, not \"{text}\"{hint}",
                s.values.join(", ")
            ))
        }
        SettingKind::Integer | SettingKind::Real => number(s, value, &text),
    }
}

fn number(s: &Setting, value: &ConfValue, text: &str) -> Result<(), String> {
    let name = &s.name;
    let integer = s.kind == SettingKind::Integer;
    let scale = s.unit.as_deref().and_then(unit_scale);
    let what = match scale {
        Some((table, _)) if std::ptr::eq(table, MEMORY) => format!(
            "an amount of memory ({}; a bare number counts {})",
            units_of(MEMORY),
            s.unit.as_deref().unwrap_or("B")
        ),
        Some(_) => format!(
            "a time ({}; a bare number counts {})",
            units_of(TIME),
            s.unit.as_deref().unwrap_or("ms")
        ),
        None if integer => "a whole number".to_string(),
        None => "a number".to_string(),
    };
    let bad = || Err(format!("`{name}` takes {what}, not \"{text}\""));
    let in_unit = match value {
        ConfValue::Bool(_) => return bad(),
        ConfValue::Int(i) => *i as f64,
        ConfValue::Float(f) => *f,
        ConfValue::Text(t) => {
            let Some((n, rest)) = number_prefix(t) else {
                return bad();
            };
            let unit = rest.trim();
            if unit.is_empty() {
                n
            } else {
                let Some((table, own)) = scale else {
                    return Err(format!(
                        "`{name}` takes {what} without a unit, not \"{text}\""
                    ));
                };
                match table.iter().find(|(u, _)| *u == unit) {
                    Some((_, m)) => n * m / own,
                    None => return bad(),
                }
            }
        }
    };
    let v = if integer { in_unit.round() } else { in_unit };
    let (lo, hi) = (s.min.unwrap_or(f64::MIN), s.max.unwrap_or(f64::MAX));
    if v < lo || v > hi || !v.is_finite() {
        let unit = s.unit.as_deref();
        return Err(format!(
            "`{name}` = {text} is out of range: it takes {} to {}",
            show(lo, unit),
            show(hi, unit)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(kind: SettingKind, unit: Option<&str>, min: f64, max: f64) -> Setting {
        Setting {
            name: "x".into(),
            kind,
            unit: unit.map(str::to_string),
            min: Some(min),
            max: Some(max),
            values: vec![],
            context: "user".into(),
            library: None,
        }
    }

    fn text(s: &str) -> ConfValue {
        ConfValue::Text(s.into())
    }

    #[test]
    fn memory_and_time_units_convert_to_the_setting_unit() {
        let shared_buffers = setting(SettingKind::Integer, Some("8kB"), 16.0, 1073741823.0);
        assert!(check_value(&shared_buffers, &text("1GB")).is_ok());
        assert!(check_value(&shared_buffers, &text("128 MB")).is_ok());
        assert!(check_value(&shared_buffers, &ConfValue::Int(16384)).is_ok());
        let err = check_value(&shared_buffers, &text("16TB")).unwrap_err();
        assert_eq!(
            err,
            "`x` = 16TB is out of range: it takes 128kB to 8589934584kB (about 8TB)"
        );
        assert!(check_value(&shared_buffers, &text("64kB"))
            .unwrap_err()
            .contains("out of range"));
        assert!(check_value(&shared_buffers, &text("1gb"))
            .unwrap_err()
            .contains("an amount of memory (B, kB, MB, GB, TB"));
        assert!(check_value(&shared_buffers, &text("200ms")).is_err());
        let timeout = setting(SettingKind::Integer, Some("ms"), 0.0, 2147483647.0);
        assert!(check_value(&timeout, &text("200ms")).is_ok());
        assert!(check_value(&timeout, &text("1.5min")).is_ok());
        assert!(check_value(&timeout, &text("-1"))
            .unwrap_err()
            .contains("takes 0ms to"));
        assert!(check_value(&timeout, &text("1GB"))
            .unwrap_err()
            .contains("takes a time"));
        let naptime = setting(SettingKind::Integer, Some("s"), 1.0, 2147483.0);
        assert_eq!(
            check_value(&naptime, &text("0")).unwrap_err(),
            "`x` = 0 is out of range: it takes 1s to 2147483s (about 25d)"
        );
    }

    #[test]
    fn numbers_without_units_and_other_types() {
        let conns = setting(SettingKind::Integer, None, 1.0, 262143.0);
        assert!(check_value(&conns, &ConfValue::Int(5000)).is_ok());
        assert!(check_value(&conns, &text("0x10")).is_ok());
        assert!(check_value(&conns, &text("100MB"))
            .unwrap_err()
            .contains("without a unit"));
        assert!(check_value(&conns, &text("lots"))
            .unwrap_err()
            .contains("a whole number"));
        assert!(check_value(&conns, &ConfValue::Int(300000)).is_err());
        let cost = setting(SettingKind::Real, None, 0.0, 1.79769e308);
        assert!(check_value(&cost, &ConfValue::Float(1.1)).is_ok());
        let mut b = setting(SettingKind::Bool, None, 0.0, 0.0);
        assert!(check_value(&b, &ConfValue::Bool(true)).is_ok());
        assert!(check_value(&b, &text("yes")).is_ok());
        assert!(check_value(&b, &text("of")).is_ok());
        assert!(check_value(&b, &text("maybe")).is_err());
        b.kind = SettingKind::Enum;
        b.values = vec![
            "local".into(),
            "remote_write".into(),
            "on".into(),
            "off".into(),
        ];
        assert!(check_value(&b, &text("ON")).is_ok());
        assert!(
            check_value(&b, &text("true")).is_ok(),
            "hidden boolean spellings"
        );
        assert!(check_value(&b, &text("remote_wirte"))
            .unwrap_err()
            .contains("did you mean `remote_write`?"));
    }
}
