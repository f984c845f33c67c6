//! dbwatch's half of `deploy/bench/rules_compare.sh`: the rules engine beside Prometheus on the same 500
//! rules over the same 100 000 series (the fleet of `rules.rs`, quiet thresholds).
//!
//! - `-- --emit DIR` writes `DIR/rules.yml` and `DIR/series.prom` (the series at one step, as a static
//!   exposition for Prometheus to scrape: its counters stand still, so the run below holds them still too).
//! - `-- --cycles N` fills 5 minutes of 15 s history, then runs N cycles as the engine does every interval
//!   (1000 newly published snapshots read, every group evaluated, the history trimmed) and prints, one
//!   `key=value` per line: the median and 90th percentile cycle, the CPU per cycle, and the process's RSS and
//!   peak RSS with everything held.
//!
//! A plain binary (no criterion) so that its memory is the engine's, not a harness's.

use std::path::PathBuf;
use std::time::Instant;

use dbwatch_rules::engine::{evaluate_once, history_for};
use dbwatch_rules::eval::cache::EvalCache;
use dbwatch_rules::group::GroupState;
use dbwatch_rules::EngineOptions;

mod fleet;

use fleet::{descriptors, exposition, rule_text, rules, snapshots, STEP_MS};

/// The step whose values the static exposition holds; every cycle reads these same values afresh.
const STATIC_STEP: i64 = 20;
const WARM_CYCLES: i64 = 21;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|at| args.get(at + 1))
            .cloned()
    };
    if let Some(dir) = value_of("--emit") {
        emit(PathBuf::from(dir));
        return;
    }
    let cycles = value_of("--cycles").map_or(40, |n| {
        n.parse()
            .unwrap_or_else(|_| panic!("--cycles wants a number, not {n:?}"))
    });
    measure(cycles);
}

fn emit(dir: PathBuf) {
    std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    for (name, text) in [
        ("rules.yml", rule_text(false)),
        ("series.prom", exposition(&descriptors(), STATIC_STEP)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }
}

fn measure(cycles: usize) {
    let descriptors = descriptors();
    let rules = rules(false);
    let mut history = history_for(&rules, &EngineOptions::default());
    let mut cache = EvalCache::default();
    let mut states: Vec<GroupState> = rules.groups.iter().map(GroupState::for_group).collect();
    let mut t = 0;
    for _ in 0..WARM_CYCLES {
        t += STEP_MS;
        evaluate_once(
            &rules,
            &mut history,
            &mut cache,
            &mut states,
            &snapshots(&descriptors, STATIC_STEP),
            t,
        );
    }
    let mut times_ms = Vec::with_capacity(cycles);
    let mut alerts = 0;
    let mut cpu_ns = 0;
    for _ in 0..cycles {
        t += STEP_MS;
        // Built outside the timed part: a collector's poll builds its snapshot, the engine only reads it.
        let published = snapshots(&descriptors, STATIC_STEP);
        let (started, cpu_started) = (Instant::now(), thread_cpu_ns());
        alerts = evaluate_once(&rules, &mut history, &mut cache, &mut states, &published, t);
        times_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        cpu_ns += thread_cpu_ns().saturating_sub(cpu_started);
    }
    times_ms.sort_by(f64::total_cmp);
    let quantile = |q: f64| times_ms[((times_ms.len() - 1) as f64 * q).round() as usize];
    let stats = history.stats();
    let (rss_kb, hwm_kb) = memory_kb();
    println!("cycles={cycles}");
    println!("series={}", stats.series);
    println!("points={}", stats.points);
    println!("alerts={alerts}");
    println!("cycle_ms_p50={:.1}", quantile(0.5));
    println!("cycle_ms_p90={:.1}", quantile(0.9));
    println!(
        "cpu_ms_per_cycle={:.1}",
        cpu_ns as f64 / 1e6 / cycles as f64
    );
    println!("rss_kb={rss_kb}");
    println!("hwm_kb={hwm_kb}");
}

/// Time this thread has run on a CPU, in ns (the first field of /proc/thread-self/schedstat); the engine's
/// cycle runs on the calling thread.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (VmRSS, VmHWM) of this process in kB.
fn memory_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
