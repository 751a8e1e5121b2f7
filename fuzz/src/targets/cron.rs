//! CronJob schedules (`*/5 * * * *`, `@every 1h`, `TZ=Europe/Berlin 0 3 * * *`).

use controllers::batch::cronjob::schedule::Schedule;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;

/// Parses a schedule and, when it parses, asks for its next few times.
pub fn fuzz(data: &[u8]) {
    let s = crate::text(data);
    let Ok(schedule) = Schedule::parse(&s, TimeZone::UTC) else {
        return;
    };
    let mut t = Timestamp::from_second(1_700_000_000).expect("a valid instant");
    for _ in 0..3 {
        match schedule.next_after(t) {
            Some(next) => {
                assert!(next > t, "{s:?}: next time {next} is not after {t}");
                t = next;
            }
            None => break,
        }
    }
}
