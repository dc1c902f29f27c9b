//! Functions and filters that Hugging Face chat templates expect from their Jinja environment:
//! `raise_exception(msg)`, `strftime_now(format)` and a `tojson` filter that writes JSON the way Python's
//! `json.dumps` does (`", "` and `": "` separators, no HTML escaping), as transformers provides them.
//!
//! Allowed dependencies: `minijinja`, `std`.

use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// Deepest nesting `tojson` follows; deeper values are reported instead of overflowing the stack.
const MAX_JSON_DEPTH: usize = 64;

/// `raise_exception(msg)`: aborts rendering with `msg` (templates use it to reject bad conversations).
pub(crate) fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current UTC time formatted with the common `strftime` fields
/// (`%Y %y %m %d %e %H %M %S %b %B %a %A %j %%`); other fields are copied as written.
pub(crate) fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    format_utc(secs, &format)
}

/// `format` applied to the UTC time `secs` seconds after 1970-01-01.
fn format_utc(secs: i64, format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let days = secs.div_euclid(86_400);
    let time_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let month_name = MONTHS[(month - 1) as usize];

    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(field) = chars.next() else {
            out.push('%');
            break;
        };
        // Writing into a String cannot fail.
        let _ = match field {
            'Y' => write!(out, "{year}"),
            'y' => write!(out, "{:02}", year.rem_euclid(100)),
            'm' => write!(out, "{month:02}"),
            'd' => write!(out, "{day:02}"),
            'e' => write!(out, "{day:>2}"),
            'H' => write!(out, "{:02}", time_of_day / 3600),
            'M' => write!(out, "{:02}", time_of_day / 60 % 60),
            'S' => write!(out, "{:02}", time_of_day % 60),
            'b' => write!(out, "{}", &month_name[..3]),
            'B' => write!(out, "{month_name}"),
            'a' => write!(out, "{}", &WEEKDAYS[weekday][..3]),
            'A' => write!(out, "{}", WEEKDAYS[weekday]),
            'j' => write!(out, "{day_of_year:03}"),
            '%' => write!(out, "%"),
            other => write!(out, "%{other}"),
        };
    }
    out
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a 400-year era's years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Day count since 1970-01-01 of a date (inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `value | tojson(indent=None, ensure_ascii=False, sort_keys=False)` with Python `json.dumps` layout.
pub(crate) fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let options = JsonOptions {
        indent: kwargs.get::<Option<usize>>("indent")?,
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&mut out, value, &options, 0)?;
    Ok(Value::from_safe_string(out))
}

struct JsonOptions {
    indent: Option<usize>,
    ensure_ascii: bool,
    sort_keys: bool,
}

fn write_json(out: &mut String, value: &Value, options: &JsonOptions, depth: usize) -> Result<(), Error> {
    if depth > MAX_JSON_DEPTH {
        return Err(Error::new(ErrorKind::InvalidOperation, "tojson: value nested too deeply"));
    }
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => match value.as_i64() {
            Some(int) if value.is_integer() => out.push_str(&int.to_string()),
            _ => write_float(out, value),
        },
        ValueKind::String => write_json_string(out, value.as_str().unwrap_or_default(), options.ensure_ascii),
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if options.sort_keys {
                keys.sort();
            }
            let items = keys
                .into_iter()
                .map(|key| {
                    let item = value.get_item(&key)?;
                    Ok((key, item))
                })
                .collect::<Result<Vec<_>, Error>>()?;
            write_container(out, ('{', '}'), items.len(), options, depth, |out, i| {
                let (key, item) = &items[i];
                // JSON keys are strings; Python converts numbers and bools the same way.
                let key_text = key.as_str().map_or_else(|| key.to_string(), str::to_owned);
                write_json_string(out, &key_text, options.ensure_ascii);
                out.push_str(": ");
                write_json(out, item, options, depth + 1)
            })?;
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, ('[', ']'), items.len(), options, depth, |out, i| {
                write_json(out, &items[i], options, depth + 1)
            })?;
        }
        other => {
            let message = format!("tojson: cannot serialize a value of kind {other}");
            return Err(Error::new(ErrorKind::InvalidOperation, message));
        }
    }
    Ok(())
}

/// Writes `n` items between `brackets`, separated as `json.dumps` does with and without `indent`.
fn write_container(
    out: &mut String,
    brackets: (char, char),
    n: usize,
    options: &JsonOptions,
    depth: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(brackets.0);
    for i in 0..n {
        match options.indent {
            Some(width) => {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&" ".repeat(width * (depth + 1)));
            }
            None if i > 0 => out.push_str(", "),
            None => {}
        }
        item(out, i)?;
    }
    if let (Some(width), true) = (options.indent, n > 0) {
        out.push('\n');
        out.push_str(&" ".repeat(width * depth));
    }
    out.push(brackets.1);
    Ok(())
}

/// Floats as Python prints them: always with a fraction or exponent, `NaN`/`Infinity` as Python does.
fn write_float(out: &mut String, value: &Value) {
    let x = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
    } else if x == x.trunc() && x.abs() < 1e16 {
        let _ = write!(out, "{x:.1}");
    } else {
        let _ = write!(out, "{x}");
    }
}

/// A JSON string literal with the escapes Python uses.
fn write_json_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                // Outside the BMP, Python writes the UTF-16 surrogate pair.
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_like_strftime() {
        // 2024-07-26 13:05:09 UTC, a Friday, day 208 of a leap year.
        let secs = 1_721_999_109;
        assert_eq!(format_utc(secs, "%d %b %Y"), "26 Jul 2024");
        assert_eq!(format_utc(secs, "%A %B %e, %y %H:%M:%S %j %% %Q"), "Friday July 26, 24 13:05:09 208 % %Q");
        assert_eq!(format_utc(0, "%Y-%m-%d %a"), "1970-01-01 Thu");
        assert_eq!(format_utc(951_782_400, "%Y-%m-%d"), "2000-02-29");
        for days in [-800_000, -1, 0, 59, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn json_matches_python_dumps() {
        let value = Value::from_serialize(serde_json::json!({"a": [1, 2.5, 3.0, null, true], "b": "é\"\n<"}));
        let mut out = String::new();
        let plain = JsonOptions { indent: None, ensure_ascii: false, sort_keys: false };
        write_json(&mut out, &value, &plain, 0).expect("serializable");
        assert_eq!(out, r#"{"a": [1, 2.5, 3.0, null, true], "b": "é\"\n<"}"#);

        let mut out = String::new();
        let indented = JsonOptions { indent: Some(2), ensure_ascii: true, sort_keys: true };
        write_json(&mut out, &value, &indented, 0).expect("serializable");
        assert_eq!(
            out,
            "{\n  \"a\": [\n    1,\n    2.5,\n    3.0,\n    null,\n    true\n  ],\n  \"b\": \"\\u00e9\\\"\\n<\"\n}"
        );
    }
}
