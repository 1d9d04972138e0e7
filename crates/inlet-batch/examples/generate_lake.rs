//! Writes a synthetic lake for the batch benchmark: realistic sessions of page, track and
//! identify calls from a fixed population over consecutive days, as the gateway would store
//! them (hourly partitions, gzip Parquet).
//!
//! `cargo run --release -p inlet-batch --example generate_lake -- DIR EVENTS DAYS USERS`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use inlet_lake::parquet_file::ParquetFile;
use inlet_lake::schema::EventColumns;
use inlet_lake::{Codec, Partition};
use inlet_segment::{StoredEvent, StoredRecord};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const SOURCES: [(&str, f64); 3] = [("web", 0.6), ("ios", 0.85), ("android", 1.0)];
const EVENTS: [&str; 8] =
    ["Case Viewed", "Post Liked", "Comment Added", "Search", "Signed In", "Case Shared", "Video Played", "Poll Voted"];
const PROFESSIONS: [&str; 3] = ["doctor", "dentist", "dental hygienist"];
const EVENTS_PER_SESSION: u64 = 8;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect("DIR"));
    let events: u64 = args.get(2).map_or(10_000_000, |a| a.parse().unwrap());
    let days: u64 = args.get(3).map_or(30, |a| a.parse().unwrap());
    let users: u64 = args.get(4).map_or(300_000, |a| a.parse().unwrap());
    let first = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    let per_day = events / days;
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        let threads = std::thread::available_parallelism().map_or(2, usize::from) as u64;
        for t in 0..threads {
            let dir = &dir;
            scope.spawn(move || {
                for d in (0..days).filter(|d| d % threads == t) {
                    let date = first + Duration::days(d as i64);
                    write_day(dir, date, d, per_day, users);
                }
            });
        }
    });
    println!("{} events over {days} days in {:.1} s", per_day * days, started.elapsed().as_secs_f64());
}

pub(crate) fn write_day(dir: &Path, date: NaiveDate, seed: u64, events: u64, users: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let midnight = date.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let mut partitions: BTreeMap<Partition, EventColumns> = BTreeMap::new();
    let min_time = "2015-01-01T00:00:00Z".parse().unwrap();
    let mut written = 0;
    let mut n = 0u64;
    while written < events {
        // A skewed population: low ids are the regulars.
        let user = ((rng.random::<f64>().powi(3)) * users as f64) as u64;
        let source = SOURCES.iter().find(|(_, c)| (user % 100) as f64 / 100.0 < *c).map_or("web", |(s, _)| s);
        let identified = user % 5 < 2;
        let mut time: DateTime<Utc> = midnight + Duration::seconds(rng.random_range(0..86_400));
        let session = EVENTS_PER_SESSION.min(events - written);
        for i in 0..session {
            n += 1;
            let id = format!("{seed}-{n}");
            let anonymous = format!("anon-{user}");
            let logged_in = identified && (i > 0 || rng.random_bool(0.5));
            let mut event = if i == 1 && identified && rng.random_bool(0.3) {
                json!({"type": "identify", "traits": {"profession": PROFESSIONS[(user % 3) as usize],
                    "name": format!("User {user}"), "email": format!("user{user}@example.com")}})
            } else if rng.random_bool(0.55) {
                let path = format!("/cases/{}", rng.random_range(0..40));
                json!({"type": "page", "name": "Case", "properties": {"path": path},
                    "context": {"page": {"path": path, "title": "Case"}, "library": {"name": "analytics.js", "version": "5.2.0"}}})
            } else {
                json!({"type": "track", "event": EVENTS[rng.random_range(0..EVENTS.len())],
                    "properties": {"case_id": rng.random_range(0..10_000)}})
            };
            let object = event.as_object_mut().unwrap();
            let stamp = time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            object.insert("messageId".into(), json!(id));
            object.insert("anonymousId".into(), json!(anonymous));
            if logged_in || object["type"] == "identify" {
                object.insert("userId".into(), json!(format!("user-{user}")));
            }
            object.insert("timestamp".into(), json!(stamp));
            object.insert("originalTimestamp".into(), json!(stamp));
            object.insert("receivedAt".into(), json!(stamp));
            let bytes = StoredEvent::new(source, object.clone()).encode();
            let record = StoredRecord::decode(&bytes).expect("a record just encoded");
            partitions.entry(Partition::of(&record, min_time)).or_default().append(&record);
            time += Duration::seconds(rng.random_range(20..400));
        }
        written += session;
    }
    for (partition, mut columns) in partitions {
        let mut file = ParquetFile::new(Codec::Gzip);
        file.write(&columns.finish()).unwrap();
        let path = dir.join(partition.file_key(&format!("gen{seed}"), 0, 1));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, file.finish().unwrap()).unwrap();
    }
}
