use super::*;
use crate::eval::dates::civil_from_days;
use crate::history::{is_stale, stale_nan};
use crate::promql::compile_query;

fn history(series: &[(&str, &[(i64, f64)])]) -> History {
    let mut history = History::new(crate::history::NameFilter::All, None);
    for (text, points) in series {
        let metric = parse_metric(text);
        for (t, v) in *points {
            history.append(&metric, *t, *v);
        }
    }
    history
}

fn parse_metric(text: &str) -> Metric {
    let (name, rest) = text.split_once('{').unwrap_or((text, "}"));
    let mut pairs = vec![("__name__".to_owned(), name.to_owned())];
    for pair in rest
        .trim_end_matches('}')
        .split(',')
        .filter(|pair| !pair.is_empty())
    {
        let (label, value) = pair.split_once('=').expect("label=value");
        pairs.push((
            label.trim().to_owned(),
            value.trim().trim_matches('"').to_owned(),
        ));
    }
    Metric::from_pairs(pairs)
}

fn run(history: &History, text: &str, t: i64) -> Result<Vec<(String, f64)>, EvalError> {
    let expr = compile_query(text).unwrap_or_else(|error| panic!("{text}: {error}"));
    let mut out: Vec<(String, f64)> = match evaluate(&expr, history, &mut EvalCache::default(), t)?
    {
        Value::Vector(samples) => samples
            .into_iter()
            .map(|s| (s.metric.to_string(), s.value))
            .collect(),
        Value::Scalar(value) => vec![(String::new(), value)],
        Value::String(text) => vec![(text, 0.0)],
    };
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

const MINUTE: i64 = 60_000;

#[test]
fn nan_comparisons_behave_like_prometheus() {
    let h = history(&[
        ("lag{r=\"a\"}", &[(0, f64::NAN)]),
        ("lag{r=\"b\"}", &[(0, 400.0)]),
    ]);
    assert_eq!(run(&h, "lag > 300", 0).expect("valid test input").len(), 1);
    assert_eq!(run(&h, "lag < 300", 0).expect("valid test input").len(), 0);
    assert_eq!(
        run(&h, "lag != 300", 0).expect("valid test input").len(),
        2,
        "NaN != x is true"
    );
    // The fused `selector <op> number` path and the general one agree, on either side.
    for (fast, general) in [
        ("lag > 300", "lag > 300 * 1"),
        ("300 < lag", "300 * 1 < lag"),
        ("lag != 300", "lag != 300 * 1"),
        ("500 >= lag", "500 * 1 >= lag"),
    ] {
        let fast = format!("{:?}", run(&h, fast, 0).expect("valid test input"));
        assert_eq!(
            fast,
            format!("{:?}", run(&h, general, 0).expect("valid test input"))
        );
    }
    let with_bool = run(&h, "lag > bool 300", 0).expect("valid test input");
    assert_eq!(
        with_bool,
        vec![("{r=\"a\"}".to_owned(), 0.0), ("{r=\"b\"}".to_owned(), 1.0)]
    );
}

#[test]
fn rate_extrapolates_and_handles_resets() {
    // 0, 10, 20, reset to 5, 15 at one-minute steps: increase 10+10+20(reset adds previous)+... Prometheus:
    // result = last - first + value before each reset = 15 - 0 + 20 = 35 over 4m sampled, extrapolated.
    let points: Vec<(i64, f64)> = vec![
        (0, 0.0),
        (MINUTE, 10.0),
        (2 * MINUTE, 20.0),
        (3 * MINUTE, 5.0),
        (4 * MINUTE, 15.0),
    ];
    let h = history(&[("c_total", &points)]);
    let increase = run(&h, "increase(c_total[5m])", 5 * MINUTE).expect("valid test input");
    // durationToStart 60s ≥ 1.1*60? no: 60 < 66, but counter zero point: first value 0 → durationToZero 0.
    // extrapolated interval = 240 + 0 + 60 = 300 → factor 1.25 → 43.75.
    assert_eq!(increase, vec![("{}".to_owned(), 43.75)]);
    let rate = run(&h, "rate(c_total[5m])", 5 * MINUTE).expect("valid test input");
    assert_eq!(rate[0].1, 35.0 * (1.25 / 300.0));
    assert_eq!(
        run(&h, "resets(c_total[5m])", 5 * MINUTE).expect("valid test input")[0].1,
        1.0
    );
    assert_eq!(
        run(&h, "irate(c_total[5m])", 4 * MINUTE).expect("valid test input")[0].1,
        10.0 / 60.0
    );
}

#[test]
fn stale_series_disappear_from_instant_selectors() {
    let h = history(&[("x", &[(0, 1.0), (MINUTE, stale_nan())])]);
    assert_eq!(run(&h, "x", 30_000).expect("valid test input").len(), 1);
    assert!(run(&h, "x", MINUTE).expect("valid test input").is_empty());
    assert_eq!(
        run(&h, "absent(x)", MINUTE).expect("valid test input"),
        vec![("{}".to_owned(), 1.0)]
    );
}

#[test]
fn vector_matching_and_grouping() {
    let h = history(&[
        ("active{t=\"a\",db=\"pg\"}", &[(0, 9.0)]),
        ("active{t=\"b\",db=\"pg\"}", &[(0, 3.0)]),
        ("max{t=\"a\"}", &[(0, 10.0)]),
        ("max{t=\"b\"}", &[(0, 10.0)]),
        ("max2{t=\"a\"}", &[(0, 1.0)]),
    ]);
    let ratio = run(&h, "active / on(t) max > 0.5", 0).expect("valid test input");
    assert_eq!(ratio, vec![("{t=\"a\"}".to_owned(), 0.9)]);
    let joined = run(&h, "active / on(t) group_left max", 0).expect("valid test input");
    assert_eq!(joined.len(), 2);
    assert_eq!(joined[0].0, "{db=\"pg\", t=\"a\"}");
    assert_eq!(
        run(&h, "sum by (db) (active)", 0).expect("valid test input"),
        vec![("{db=\"pg\"}".to_owned(), 12.0)]
    );
    assert_eq!(
        run(&h, "topk(1, active)", 0).expect("valid test input")[0].1,
        9.0
    );
    // Both `max` series have the same (empty) `db`: the "one" side is not unique, as Prometheus says.
    assert!(matches!(
        run(&h, "active / on(db) max", 0),
        Err(EvalError::ManyToMany { .. })
    ));
    assert!(matches!(run(&h, "active / on(t) max{t=\"z\"}", 0), Ok(v) if v.is_empty()));
    assert_eq!(
        run(&h, "active + on(db) group_left sum by (db) (active)", 0)
            .expect("valid test input")
            .len(),
        2
    );
    assert!(matches!(
        run(&h, "sum by (db) (active) + on(db) active", 0),
        Err(EvalError::ManyToMany { .. })
    ));
    assert!(matches!(
        run(&h, "{__name__=~\"max|max2\"} * 1", 0),
        Err(EvalError::DuplicateLabelset)
    ));
    assert_eq!(
        run(&h, "active and on(t) max", 0)
            .expect("valid test input")
            .len(),
        2
    );
    assert_eq!(
        run(&h, "active unless on(t) max{t=\"a\"}", 0)
            .expect("valid test input")
            .len(),
        1
    );
}

/// Whether two elements matching the same one is an error depends on the values: only the elements a
/// comparison keeps count. A pairing kept from the previous evaluation must still tell.
#[test]
fn matching_errors_that_depend_on_values_follow_each_evaluation() {
    let h = history(&[
        (
            "m{target=\"x\",slot=\"a\",v=\"1\"}",
            &[(0, 5.0), (1000, 5.0), (2000, 5.0)],
        ),
        (
            "m{target=\"x\",slot=\"a\",v=\"2\"}",
            &[(0, 1.0), (1000, 4.0), (2000, 1.0)],
        ),
        (
            "n{target=\"x\",v=\"9\"}",
            &[(0, 3.0), (1000, 3.0), (2000, 3.0)],
        ),
    ]);
    for (text, error) in [
        ("m > on(target) n", EvalError::ImplicitManyToOne),
        (
            "m > on(target) group_left(v) n",
            EvalError::GroupingNotUnique,
        ),
    ] {
        assert_eq!(run(&h, text, 0).map(|out| out.len()), Ok(1), "{text}");
        assert_eq!(run(&h, text, 1000), Err(error), "{text}");
        assert_eq!(run(&h, text, 2000).map(|out| out.len()), Ok(1), "{text}");
    }
}

/// What is kept from one evaluation to the next (pairings, groupings, results written over their
/// predecessors) must never change an answer: over cycles where series appear, go stale, come back, reset
/// and get relocated by the history's layout, a history evaluated cycle after cycle answers exactly what a
/// history built from scratch with the same samples answers.
#[test]
fn kept_pairings_groupings_and_results_answer_like_a_fresh_history() {
    const STEP: i64 = 15_000;
    let expressions = [
        "m / on(target) group_left n",
        "m > on(target) n",
        "m >= on(target) group_left n",
        "n < on(target) group_right m",
        "sum by (target) (m)",
        "avg without (slot) (m)",
        "topk(1, m)",
        "bottomk by (slot) (2, m)",
        "count(m > 3)",
        "rate(c_total[1m])",
        "m == bool 4",
        "sum by (slot) (m) / ignoring(slot) group_left sum(n)",
        "m and on(target) n > 2",
        "m unless on(target) n > 5",
        "max_over_time(m[1m]) > 2",
        "-m",
        "abs(m - 3) + on(target, slot) m",
    ];
    let compiled: Vec<Expr> = expressions
        .iter()
        .map(|text| compile_query(text).unwrap_or_else(|error| panic!("{text}: {error}")))
        .collect();
    // The samples of cycle `i`: target y goes away at cycle 9 (a staleness marker) and comes back at 12,
    // z gains a second slot at 5, x's counter resets at 7.
    let samples = |i: i64| {
        let mut out = Vec::new();
        for (t_index, target) in ["x", "y", "z"].into_iter().enumerate() {
            let gone = target == "y" && (9..12).contains(&i);
            let slots: &[&str] = if target == "z" && i < 5 {
                &["a"]
            } else {
                &["a", "b"]
            };
            let t_index = t_index as i64;
            let n_value = if gone && i > 9 {
                None
            } else if gone {
                Some(stale_nan())
            } else {
                Some(((i * 5 + t_index) % 7) as f64)
            };
            if let Some(value) = n_value {
                out.push((format!("n{{target=\"{target}\"}}"), value));
            }
            for (s_index, slot) in slots.iter().enumerate() {
                let s_index = s_index as i64;
                let m = ((i * 7 + t_index * 3 + s_index * 5) % 9) as f64;
                let count = if target == "x" && i >= 7 { i - 7 } else { i } * (3 + t_index);
                for (name, value) in [("m", m), ("c_total", count as f64)] {
                    let value = match n_value {
                        Some(marker) if is_stale(marker) => marker,
                        Some(_) => value,
                        None => continue,
                    };
                    out.push((
                        format!("{name}{{target=\"{target}\",slot=\"{slot}\"}}"),
                        value,
                    ));
                }
            }
        }
        out
    };
    let filter = crate::history::NameFilter::All;
    let mut kept = History::new(filter.clone(), Some(2 * MINUTE));
    let mut kept_cache = EvalCache::default();
    let mut kept_groups: Option<Vec<Sample>> = None;
    let (mut groups_reused, mut groups_rebuilt) = (0, 0);
    for cycle in 0..16 {
        let t = cycle * STEP;
        for (text, value) in samples(cycle) {
            kept.append(&parse_metric(&text), t, value);
        }
        let mut fresh = History::new(filter.clone(), Some(2 * MINUTE));
        for earlier in 0..=cycle {
            for (text, value) in samples(earlier) {
                fresh.append(&parse_metric(&text), earlier * STEP, value);
            }
        }
        for (text, expr) in expressions.iter().zip(&compiled) {
            let answer = |history: &History, cache: &mut EvalCache| {
                evaluate(expr, history, cache, t).map(|value| match value {
                    Value::Vector(samples) => {
                        let mut out: Vec<(String, u64)> = samples
                            .iter()
                            .map(|sample| (sample.metric.to_string(), sample.value.to_bits()))
                            .collect();
                        out.sort();
                        out
                    }
                    other => panic!("{text}: {other:?}"),
                })
            };
            assert_eq!(
                answer(&kept, &mut kept_cache),
                answer(&fresh, &mut EvalCache::default()),
                "{text} at cycle {cycle}"
            );
        }
        // Whether `sum by (target) (m)` kept its grouping: its label sets are then the very same.
        let Ok(Value::Vector(groups)) = evaluate(&compiled[4], &kept, &mut kept_cache, t) else {
            panic!("sum by (target) (m) at cycle {cycle}");
        };
        if let Some(previous) = &kept_groups {
            let same = previous.len() == groups.len()
                && previous
                    .iter()
                    .zip(&groups)
                    .all(|(a, b)| a.metric.is_same_allocation(&b.metric));
            if same {
                groups_reused += 1;
            } else {
                groups_rebuilt += 1;
            }
        }
        kept_groups = Some(groups);
        let cutoff = kept.trim(t);
        kept_cache.end_cycle(cutoff);
    }
    // Both ways were taken: kept while the series stayed, made again when they changed.
    assert!(
        groups_reused >= 8,
        "the grouping was kept {groups_reused} times"
    );
    assert!(
        groups_rebuilt >= 2,
        "the grouping was made again {groups_rebuilt} times"
    );
}

#[test]
fn functions_follow_prometheus() {
    let h = history(&[("x{a=\"host:9\"}", &[(0, -2.5)])]);
    assert_eq!(run(&h, "abs(x)", 0).expect("valid test input")[0].1, 2.5);
    assert_eq!(
        run(&h, "clamp_min(x, 0)", 0).expect("valid test input")[0].1,
        0.0
    );
    assert_eq!(run(&h, "round(x)", 0).expect("valid test input")[0].1, -2.0);
    assert_eq!(
        run(&h, "time()", 90_000).expect("valid test input")[0].1,
        90.0
    );
    assert_eq!(
        run(&h, "timestamp(x)", 30_000).expect("valid test input")[0].1,
        0.0
    );
    let replaced = run(
        &h,
        "label_replace(x, \"host\", \"$1\", \"a\", \"(.*):.*\")",
        0,
    )
    .expect("valid test input");
    assert_eq!(
        replaced[0].0,
        "{__name__=\"x\", a=\"host:9\", host=\"host\"}"
    );
    let joined = run(&h, "label_join(x, \"b\", \"-\", \"a\", \"a\")", 0).expect("valid test input");
    assert_eq!(
        joined[0].0,
        "{__name__=\"x\", a=\"host:9\", b=\"host:9-host:9\"}"
    );
    assert_eq!(
        run(&h, "year(vector(86400 * 365))", 0).expect("valid test input")[0].1,
        1971.0
    );
    assert_eq!(
        run(&h, "day_of_week()", 0).expect("valid test input")[0].1,
        4.0
    );
    assert_eq!(
        run(&h, "scalar(x) * 2", 0).expect("valid test input")[0].1,
        -5.0
    );
}

#[test]
fn civil_dates_round_trip() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(date_part(Func::DayOfYear, 19_782 * 86_400), 60.0);
    assert_eq!(date_part(Func::DaysInMonth, 19_782 * 86_400), 29.0);
}

#[test]
fn subqueries_evaluate_at_every_aligned_step() {
    // x rises by 1 every minute: 0 at 0, 10 at 10m.
    let points: Vec<(i64, f64)> = (0..=10).map(|i| (i * MINUTE, i as f64)).collect();
    let h = history(&[("x{j=\"a\"}", &points)]);
    // Steps at 6m..10m (aligned to the minute): 6+7+8+9+10.
    assert_eq!(
        run(&h, "sum_over_time(x[4m:1m])", 10 * MINUTE).expect("valid"),
        [("{j=\"a\"}".to_owned(), 40.0)]
    );
    // At 10m30s the steps are still 7m..10m... and 6m30s is not a step: 7+8+9+10, the instant selector
    // reading each step's latest sample.
    assert_eq!(
        run(&h, "sum_over_time(x[4m:1m])", 10 * MINUTE + 30_000).expect("valid"),
        [("{j=\"a\"}".to_owned(), 34.0)]
    );
    // A subquery of a range function; the name stays only for last_over_time.
    assert_eq!(
        run(&h, "max_over_time(rate(x[2m])[5m:1m])", 10 * MINUTE).expect("valid"),
        [("{j=\"a\"}".to_owned(), 1.0 / 60.0)]
    );
    assert_eq!(
        run(&h, "last_over_time(x[3m:1m] offset 2m)", 10 * MINUTE).expect("valid"),
        [("{__name__=\"x\", j=\"a\"}".to_owned(), 8.0)]
    );
    // Nothing in range: absent_over_time answers, present_over_time does not.
    assert_eq!(
        run(&h, "absent_over_time(nothing[5m:1m])", 10 * MINUTE).expect("valid"),
        [("{}".to_owned(), 1.0)]
    );
    assert!(run(&h, "present_over_time(nothing[5m:1m])", 10 * MINUTE)
        .expect("valid")
        .is_empty());
    assert_eq!(
        run(&h, "present_over_time(x[5m:1m])", 10 * MINUTE).expect("valid"),
        [("{j=\"a\"}".to_owned(), 1.0)]
    );
}

#[test]
fn at_modifiers_and_negative_offsets_read_other_times() {
    let points: Vec<(i64, f64)> = (0..=10).map(|i| (i * MINUTE, i as f64)).collect();
    let h = history(&[("x", &points)]);
    let at = |text: &str, t: i64| run(&h, text, t).expect("valid")[0].1;
    assert_eq!(at("x @ 180", 10 * MINUTE), 3.0);
    assert_eq!(at("x @ 180 offset 1m", 10 * MINUTE), 2.0);
    assert_eq!(at("x @ end()", 4 * MINUTE), 4.0);
    assert_eq!(at("x offset -2m", 4 * MINUTE), 6.0);
    assert_eq!(
        at("sum_over_time(x[2m] @ 300)", 10 * MINUTE),
        3.0 + 4.0 + 5.0
    );
    // start() inside a subquery is the query's time, not the step's.
    assert_eq!(
        at("sum_over_time((x @ start())[3m:1m])", 5 * MINUTE),
        4.0 * 5.0
    );
    assert_eq!(at("timestamp(x @ 125)", 10 * MINUTE), 120.0);
}
