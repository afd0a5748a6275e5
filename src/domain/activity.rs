//! The activity heatmap's arithmetic (`PROTOCOL.md` §6, `GET /api/v1/me/activity`): UTC days as
//! day numbers and `YYYY-MM-DD` text, and the streaks over a set of active days. Pure, so the
//! calendar edge cases are tested here without a clock.

/// Days since 1970-01-01 (UTC) of a date, from Howard Hinnant's `days_from_civil`.
pub fn day_number(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number: `(year, month, day)`.
pub fn civil(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// The UTC day number of a unix time in milliseconds.
pub fn day_of_ms(unix_ms: u64) -> i64 {
    (unix_ms / 86_400_000) as i64
}

/// `YYYY-MM-DD` of a day number.
pub fn date_text(days: i64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of `YYYY-MM-DD`, if it is a real date.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let n = day_number(year, month, day);
    (civil(n) == (year, month, day)).then_some(n)
}

/// `(current, longest)` runs of consecutive active days. The current streak ends today, or
/// yesterday when nothing happened yet today (a day still under way does not break it, as on
/// GitHub). `active` may be in any order and hold repeats.
pub fn streaks(active: &[i64], today: i64) -> (u32, u32) {
    let mut days = active.to_vec();
    days.sort_unstable();
    days.dedup();
    let mut longest = 0;
    let mut run = 0;
    let mut previous: Option<i64> = None;
    for &day in &days {
        run = if previous == Some(day - 1) {
            run + 1
        } else {
            1
        };
        longest = longest.max(run);
        previous = Some(day);
    }
    let has = |d: i64| days.binary_search(&d).is_ok();
    let mut end = if has(today) { today } else { today - 1 };
    let mut current = 0;
    while has(end) {
        current += 1;
        end -= 1;
    }
    (current, longest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_across_leap_years_and_centuries() {
        assert_eq!(day_number(1970, 1, 1), 0);
        assert_eq!(date_text(0), "1970-01-01");
        for n in [-1, 59, 365, 10_956, 11_016, 20_000, 20_785] {
            let (y, m, d) = civil(n);
            assert_eq!(day_number(y, m, d), n);
        }
        assert_eq!(parse_date("2024-02-29"), Some(day_number(2024, 2, 29)));
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(
            parse_date("2000-02-29").map(date_text).as_deref(),
            Some("2000-02-29")
        );
        assert_eq!(parse_date("junk"), None);
        assert_eq!(day_of_ms(86_400_000 * 3 + 5), 3);
    }

    #[test]
    fn streaks_count_runs_and_forgive_an_unfinished_today() {
        let today = day_number(2026, 11, 28);
        assert_eq!(streaks(&[], today), (0, 0));
        // Three days ending yesterday, nothing yet today: the streak still stands.
        assert_eq!(streaks(&[today - 1, today - 2, today - 3], today), (3, 3));
        // Ending today, with repeats and out of order.
        assert_eq!(
            streaks(&[today, today - 1, today, today - 1], today),
            (2, 2)
        );
        // A gap two days ago ends the current run; an older run is the longest.
        let older = [today - 20, today - 19, today - 18, today - 17];
        let mut days = older.to_vec();
        days.extend([today - 3, today]);
        assert_eq!(streaks(&days, today), (1, 4));
        // Across a year boundary.
        let ny = day_number(2027, 1, 1);
        assert_eq!(streaks(&[ny - 1, ny], ny), (2, 2));
    }
}
