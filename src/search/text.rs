//! Text matching for `$like` and `$fulltext`, and times as callers write
//! them.

/// SQL LIKE, case-sensitive: `%` matches any run of characters, `_` one
/// character, `\` makes the next character literal.
pub(super) fn like(pattern: &str, s: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Lit(char),
    }
    let mut pat = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pat.push(match c {
            '%' => P::Any,
            '_' => P::One,
            '\\' => P::Lit(chars.next().unwrap_or('\\')),
            c => P::Lit(c),
        });
    }
    let s: Vec<char> = s.chars().collect();
    // Greedy with one backtrack point: linear in practice, O(n·m) at worst.
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(p) {
            Some(P::Any) => {
                star = Some((p, i));
                p += 1;
            }
            Some(P::One) => {
                p += 1;
                i += 1;
            }
            Some(P::Lit(c)) if *c == s[i] => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|x| *x == P::Any)
}

/// Every whitespace-separated word of `query` occurs, ignoring case, in one
/// of `texts`.
pub(super) fn fulltext<'a>(query: &str, texts: impl Iterator<Item = &'a str> + Clone) -> bool {
    let lowered: Vec<String> = texts.map(str::to_lowercase).collect();
    query
        .split_whitespace()
        .map(str::to_lowercase)
        .all(|w| lowered.iter().any(|t| t.contains(&w)))
}

/// A time as callers write one: RFC 3339 (`2026-12-01T10:00:00Z`, offsets
/// and fractions allowed) or a date (`2026-12-01`, midnight UTC), as
/// milliseconds since the Unix epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_at(s.len().min(10));
    let d: Vec<&str> = date.split('-').collect();
    let [y, m, day] = d.as_slice() else {
        return None;
    };
    let (y, m, day): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, day.parse().ok()?);
    if y.to_string().len() != 4 || !(1..=12).contains(&m) || day < 1 || day > days_in(y, m) {
        return None;
    }
    let mut ms = days_from_civil(y, m, day) * 86_400_000;
    if rest.is_empty() {
        return Some(ms);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (clock, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => return None,
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let t: Vec<&str> = hms.split(':').collect();
    let [h, mi, sec] = t.as_slice() else {
        return None;
    };
    let (h, mi, sec): (i64, i64, i64) = (h.parse().ok()?, mi.parse().ok()?, sec.parse().ok()?);
    if h > 23 || mi > 59 || sec > 60 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let frac_ms = format!("{frac:0<3}")[..3].parse::<i64>().ok()?;
    ms += ((h * 60 + mi) * 60 + sec) * 1000 + frac_ms;
    let offset = match zone {
        "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (oh, om) = z[1..].split_once(':')?;
            let (oh, om): (i64, i64) = (oh.parse().ok()?, om.parse().ok()?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 60 + om) * 60_000
        }
    };
    Some(ms - offset)
}

fn days_in(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
