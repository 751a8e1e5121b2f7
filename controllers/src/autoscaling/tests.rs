//! Unit tests of the autoscaler's decisions. The scenarios and expected numbers follow
//! upstream's `replica_calculator_test.go` and `horizontal_test.go` (two containers per
//! pod, each with the pod's request; CPU-initialization period 2 min, initial-readiness
//! delay 10 s, tolerance 0.1).

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HPAScalingPolicy, HPAScalingRules, MetricSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::behavior::{self, Behavior, History, Recommendation, ScaleEvent};
use super::compute::{self, Context, Failure, Fetched, Outcome};
use super::metrics::{ContainerMetrics, PodMetrics};
use super::replicas::{
    self, PodMetric, PodMetricsInfo, PodSamples, Proposal, Readiness, Tolerances,
};

const READINESS: Readiness = Readiness {
    cpu_initialization_period: Duration::from_secs(120),
    initial_readiness_delay: Duration::from_secs(10),
};
const TOL: Tolerances = Tolerances {
    scale_down: 0.1,
    scale_up: 0.1,
};

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn ago(secs: i64) -> Timestamp {
    now() - SignedDuration::from_secs(secs)
}

/// A pod as upstream's test harness builds it.
#[derive(Clone)]
struct PodSpec {
    phase: &'static str,
    ready: bool,
    start: Timestamp,
    deleting: bool,
    request: Option<&'static str>,
}

impl Default for PodSpec {
    fn default() -> Self {
        PodSpec {
            phase: "Running",
            ready: true,
            // Go's zero time: long before any initialization period.
            start: Timestamp::UNIX_EPOCH,
            deleting: false,
            request: Some("1.0"),
        }
    }
}

fn pod(i: usize, p: &PodSpec) -> Pod {
    let resources = p
        .request
        .map(|r| serde_json::json!({"requests": {"cpu": r}}))
        .unwrap_or(serde_json::json!({}));
    let mut meta = serde_json::json!({"name": format!("pod-{i}"), "namespace": "ns", "labels": {"name": "pod"}});
    if p.deleting {
        meta["deletionTimestamp"] = serde_json::json!(now().to_string());
    }
    serde_json::from_value(serde_json::json!({
        "metadata": meta,
        "spec": {"containers": [
            {"name": "container1", "resources": resources},
            {"name": "container2", "resources": resources},
        ]},
        "status": {
            "phase": p.phase,
            "startTime": p.start.to_string(),
            "conditions": [{"type": "Ready", "status": if p.ready { "True" } else { "False" },
                            "lastTransitionTime": Timestamp::UNIX_EPOCH.to_string()}],
        }
    }))
    .unwrap()
}

/// PodMetrics with the given per-container levels (Go's zero timestamp, a 1 min window).
fn pod_metrics(levels: &[Vec<i64>]) -> Vec<PodMetrics> {
    levels
        .iter()
        .enumerate()
        .map(|(i, l)| PodMetrics {
            name: format!("pod-{i}"),
            timestamp: Timestamp::UNIX_EPOCH,
            window: Duration::from_secs(60),
            containers: l
                .iter()
                .enumerate()
                .map(|(c, v)| ContainerMetrics {
                    name: format!("container{}", c + 1),
                    usage: [(
                        "cpu".to_string(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity(format!("{v}m")),
                    )]
                    .into(),
                })
                .collect(),
        })
        .collect()
}

/// Both containers at `level`.
fn levels(l: &[i64]) -> Vec<Vec<i64>> {
    l.iter().map(|v| vec![*v, *v]).collect()
}

struct Case {
    current: i32,
    pods: Vec<PodSpec>,
    levels: Vec<Vec<i64>>,
    target: i32,
    container: Option<&'static str>,
}

impl Case {
    fn new(current: i32, n: usize, levels: Vec<Vec<i64>>, target: i32) -> Self {
        Case {
            current,
            pods: vec![PodSpec::default(); n],
            levels,
            target,
            container: None,
        }
    }

    fn ready(mut self, r: &[bool]) -> Self {
        for (p, r) in self.pods.iter_mut().zip(r) {
            p.ready = *r;
        }
        self
    }

    fn with(mut self, f: impl Fn(usize, &mut PodSpec)) -> Self {
        for (i, p) in self.pods.iter_mut().enumerate() {
            f(i, p);
        }
        self
    }

    fn run(&self) -> Result<Proposal, String> {
        let pods: Vec<Pod> = self
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| pod(i, p))
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let (metrics, _) =
            super::metrics::resource_samples(&pod_metrics(&self.levels), "cpu", self.container)?;
        let requests = replicas::pod_requests(&refs, self.container, "cpu", true)?;
        let s = PodSamples {
            pods: &refs,
            metrics,
            cpu: true,
            readiness: READINESS,
            now: now(),
        };
        replicas::utilization_replicas(self.current, self.target, s, &requests, TOL)
    }

    fn expect(&self, replicas: i32, utilization: i32, value: i64) {
        let p = self.run().unwrap();
        assert_eq!(
            (p.replicas, p.utilization, p.value),
            (replicas, Some(utilization), value)
        );
    }
}

#[test]
fn scale_up_and_down_by_utilization() {
    Case::new(3, 3, levels(&[300, 500, 700]), 30).expect(5, 50, 1000);
    Case::new(5, 5, levels(&[100, 300, 500, 250, 250]), 50).expect(3, 28, 560);
    // Only container2 counts.
    let mut c = Case::new(
        3,
        3,
        vec![vec![1000, 300], vec![1000, 500], vec![1000, 700]],
        30,
    );
    c.container = Some("container2");
    c.expect(5, 50, 500);
}

#[test]
fn unready_pods_are_left_out_of_a_scale_up() {
    // One unready pod: it counts as 0 % on the scale-up.
    Case::new(3, 3, levels(&[300, 500, 700]), 30)
        .ready(&[false, true, true])
        .expect(4, 60, 1200);
    // Counting the unready pods at 0 % would turn the scale-up around: no change.
    Case::new(3, 3, levels(&[400, 500, 700]), 30)
        .ready(&[true, false, false])
        .expect(3, 40, 800);
    // A pod still initialising (started now, sampled before a full window since it turned
    // ready) is set aside like an unready one.
    Case::new(3, 3, levels(&[300, 500, 700]), 30)
        .with(|i, p| p.start = if i == 0 { now() } else { ago(180) })
        .expect(4, 60, 1200);
}

#[test]
fn unready_pods_are_left_out_of_a_scale_down() {
    Case::new(5, 5, levels(&[100, 300, 500, 250, 250]), 50)
        .ready(&[true, true, true, false, false])
        .expect(2, 30, 600);
    Case::new(5, 5, levels(&[100, 300, 500, 250, 250]), 50)
        .with(|i, p| p.start = if i >= 3 { now() } else { ago(180) })
        .expect(2, 30, 600);
    // Pending pods are unready whatever their metrics.
    Case::new(5, 5, levels(&[100, 300, 500, 250, 250]), 50)
        .with(|i, p| {
            if i >= 3 {
                p.phase = "Pending";
            }
        })
        .expect(2, 30, 600);
}

#[test]
fn failed_and_deleted_pods_are_ignored() {
    Case::new(2, 4, levels(&[500, 700]), 30)
        .ready(&[true, true, false, false])
        .with(|i, p| {
            if i >= 2 {
                p.phase = "Failed";
            }
        })
        .expect(4, 60, 1200);
    Case::new(2, 4, levels(&[500, 700]), 30)
        .ready(&[true, true, false, false])
        .with(|i, p| p.deleting = i >= 2)
        .expect(4, 60, 1200);
    Case::new(5, 7, levels(&[100, 300, 500, 250, 250]), 50)
        .ready(&[true, true, true, true, true, false, false])
        .with(|i, p| p.deleting = i >= 5)
        .expect(3, 28, 560);
}

#[test]
fn tolerance_keeps_the_scale() {
    let mut c = Case::new(3, 3, levels(&[1010, 1030, 1020]), 100);
    c.pods[0].request = Some("0.9");
    c.pods[2].request = Some("1.1");
    c.expect(3, 102, 2040);
    assert!(TOL.is_within(0.9) && TOL.is_within(1.1));
    assert!(!TOL.is_within(0.89) && !TOL.is_within(1.11));
    let asym = Tolerances {
        scale_down: 0.0,
        scale_up: 0.5,
    };
    assert!(!asym.is_within(0.99) && asym.is_within(1.4));
}

#[test]
fn computed_tolerance_boundary() {
    // 10 pods using 150m each against requests averaging 300m (50 %): a target of 56 %
    // breaches the tolerance (ratio 0.89), one of 55 % does not (0.909).
    let requests = [400, 200, 310, 290, 302, 298, 301, 299, 300, 300];
    let case = |target| {
        let mut c = Case::new(10, 10, levels(&[150; 10]), target);
        for (p, r) in c.pods.iter_mut().zip(requests) {
            p.request = Some(Box::leak(format!("{r}m").into_boxed_str()));
        }
        c
    };
    case(56).expect(9, 50, 300);
    case(55).expect(10, 50, 300);
}

#[test]
fn missing_metrics_count_against_the_direction() {
    // Scale-down: the two pods without metrics count as using their whole request.
    Case::new(4, 4, levels(&[400, 95]), 100).expect(3, 24, 495);
    // Equal, above and below target with one pod missing: no change.
    Case::new(2, 2, levels(&[1000]), 100).expect(2, 100, 2000);
    Case::new(2, 2, levels(&[1900]), 100).expect(2, 190, 3800);
    Case::new(2, 2, levels(&[600]), 100).expect(2, 60, 1200);
    // Unready pod 0 and missing pod 2 around the target: no change.
    Case::new(3, 3, levels(&[100, 450]), 50)
        .ready(&[false, true, true])
        .expect(3, 45, 900);
    // Far above target: the unready and missing pods count as 0 %.
    Case::new(3, 3, levels(&[100, 2000]), 50)
        .ready(&[false, true, true])
        .expect(4, 200, 4000);
    Case::new(4, 4, levels(&[100, 100, 100]), 50)
        .ready(&[false, true, true, true])
        .expect(3, 10, 200);
    // A target above 100 %: missing pods count at the target.
    let mut c = Case::new(4, 4, levels(&[200, 100, 100]), 300).ready(&[false, true, true, true]);
    c.pods[2].request = Some("2.0");
    c.pods[3].request = Some("2.0");
    c.expect(2, 6, 200);
    // A surge pod without metrics during a rolling update does not scale up.
    Case::new(2, 3, levels(&[100, 100]), 50).expect(2, 10, 200);
}

#[test]
fn superfluous_metrics_and_errors() {
    // Metrics of pods that are not the target's are ignored in the utilization.
    Case::new(4, 4, levels(&[4000, 9500, 3000, 7000, 3200, 2000]), 100).expect(24, 587, 11750);
    let err = Case::new(4, 3, vec![], 100).run().unwrap_err();
    assert_eq!(err, "no metrics returned from resource metrics API");
    let err = Case::new(1, 1, levels(&[200]), 100)
        .with(|_, p| p.request = None)
        .run()
        .unwrap_err();
    assert!(
        err.starts_with("missing request for cpu in container container1 of Pod pod-0"),
        "{err}"
    );
    let err = Case::new(1, 0, levels(&[200]), 100).run().unwrap_err();
    assert_eq!(
        err,
        "no pods returned by selector while calculating replica count"
    );
    let err = Case::new(1, 1, levels(&[200]), 100)
        .with(|_, p| p.phase = "Pending")
        .run()
        .unwrap_err();
    assert_eq!(
        err,
        "did not receive metrics for targeted pods (pods might be unready)"
    );
    let mut c = Case::new(1, 1, levels(&[200]), 100);
    c.container = Some("nope");
    let pods = [pod(0, &c.pods[0])];
    let err = replicas::pod_requests(&[&pods[0]], Some("nope"), "cpu", true).unwrap_err();
    assert_eq!(err, "container nope not found in Pod pod-0");
}

#[test]
fn pod_level_requests_win_without_a_container() {
    let mut p = pod(0, &PodSpec::default());
    p.spec.as_mut().unwrap().resources =
        Some(serde_json::from_value(serde_json::json!({"requests": {"cpu": "3"}})).unwrap());
    let r = replicas::pod_requests(&[&p], None, "cpu", true).unwrap();
    assert_eq!(r["pod-0"], 3000);
    let r = replicas::pod_requests(&[&p], None, "cpu", false).unwrap();
    assert_eq!(r["pod-0"], 2000);
    let r = replicas::pod_requests(&[&p], Some("container2"), "cpu", true).unwrap();
    assert_eq!(r["pod-0"], 1000);
}

fn sample(value: i64) -> PodMetric {
    PodMetric {
        timestamp: now(),
        window: Duration::from_secs(60),
        value,
    }
}

#[test]
fn average_value_targets() {
    let pods: Vec<Pod> = (0..3).map(|i| pod(i, &PodSpec::default())).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let s = |vals: &[i64]| PodSamples {
        pods: &refs,
        metrics: vals
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("pod-{i}"), sample(*v)))
            .collect::<PodMetricsInfo>(),
        cpu: false,
        readiness: READINESS,
        now: now(),
    };
    // 3 pods averaging 20k against 10k: 6 replicas.
    let p = replicas::average_value_replicas(3, 10_000, s(&[10_000, 20_000, 30_000]), TOL).unwrap();
    assert_eq!((p.replicas, p.value), (6, 20_000));
    // One pod missing on a scale-down counts as exactly the target: 5 → ... stays within.
    let p = replicas::average_value_replicas(5, 20_000, s(&[20_000, 19_000, 21_000]), TOL).unwrap();
    assert_eq!(p.replicas, 5);
    // Scale-down with a missing pod counted at the target: (5k+5k+10k)/3 / 10k = 0.67.
    let p = replicas::average_value_replicas(3, 10_000, s(&[5_000, 5_000]), TOL).unwrap();
    assert_eq!((p.replicas, p.value), (2, 5_000));
    // Memory is not CPU: an unready pod's sample still counts.
    let mut unready = pods.clone();
    unready[0] = pod(
        0,
        &PodSpec {
            ready: false,
            start: now(),
            ..Default::default()
        },
    );
    let refs2: Vec<&Pod> = unready.iter().collect();
    let g = replicas::group_pods(&refs2, &s(&[1, 1, 1]).metrics, false, READINESS, now());
    assert_eq!((g.ready, g.unready.len()), (3, 0));
    let g = replicas::group_pods(&refs2, &s(&[1, 1, 1]).metrics, true, READINESS, now());
    assert_eq!((g.ready, g.unready.len()), (2, 1));
}

#[test]
fn cpu_readiness_rules() {
    let m = |ts: Timestamp| -> PodMetricsInfo {
        [(
            "pod-0".to_string(),
            PodMetric {
                timestamp: ts,
                window: Duration::from_secs(30),
                value: 1,
            },
        )]
        .into()
    };
    let with_transition = |ready: bool, start: Timestamp, transition: Timestamp| {
        let mut p = pod(
            0,
            &PodSpec {
                ready,
                start,
                ..Default::default()
            },
        );
        p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(transition),
        );
        p
    };
    let unready = |p: &Pod, ts| {
        replicas::group_pods(&[p], &m(ts), true, READINESS, now())
            .unready
            .contains("pod-0")
    };
    // Within the initialization period: a sample taken a full window after turning ready
    // counts, an earlier one does not.
    let p = with_transition(true, ago(60), ago(50));
    assert!(!unready(&p, ago(10)));
    assert!(unready(&p, ago(40)));
    // After it: unready and never ready since start-up (transition within the delay) is
    // set aside; unready after having been ready counts.
    let p = with_transition(false, ago(600), ago(595));
    assert!(unready(&p, now()));
    let p = with_transition(false, ago(600), ago(60));
    assert!(!unready(&p, now()));
    // No start time: unready.
    let mut p = with_transition(true, ago(600), ago(590));
    p.status.as_mut().unwrap().start_time = None;
    assert!(unready(&p, now()));
}

// ---- normalization: stabilization, policies, min/max ----

fn rec(replicas: i32, secs_ago: i64) -> Recommendation {
    Recommendation {
        replicas,
        at: ago(secs_ago),
    }
}

#[test]
fn normalize_without_behavior_stabilizes_downscale() {
    let window = Duration::from_secs(300);
    for (history, desired, stabilized, log_len) in [
        (vec![], 5, 5, 1),
        (vec![rec(4, 120), rec(5, 60)], 3, 5, 3),
        (vec![rec(1, 120), rec(2, 60)], 3, 3, 3),
        (vec![rec(10, 600), rec(9, 540)], 3, 3, 2),
        (
            vec![rec(10, 600), rec(4, 60), rec(5, 120), rec(9, 540)],
            3,
            5,
            4,
        ),
    ] {
        let mut h = History {
            recommendations: history,
            ..Default::default()
        };
        let d = behavior::normalize(&mut h, 10, desired, 1, 100, window, now());
        assert_eq!(d.replicas, stabilized, "{desired}");
        assert_eq!(h.recommendations.len(), log_len);
        let reason = if stabilized != desired {
            "ScaleDownStabilized"
        } else {
            "ReadyForNewScale"
        };
        assert_eq!(d.able_reason, reason);
    }
}

#[test]
fn normalize_without_behavior_limits() {
    let w = Duration::ZERO;
    for (current, desired, min, max, want, reason) in [
        (5, 7, 3, 8, 7, "DesiredWithinRange"),
        (3, 1, 2, 8, 2, "TooFewReplicas"),
        (1, 0, 0, 10, 0, "DesiredWithinRange"),
        (20, 1000, 1, 10, 10, "TooManyReplicas"),
        (3, 1000, 1, 2000, 6, "ScaleUpLimit"),
        (1, 1000, 1, 2000, 4, "ScaleUpLimit"),
    ] {
        let mut h = History::default();
        let d = behavior::normalize(&mut h, current, desired, min, max, w, now());
        assert_eq!(
            (d.replicas, d.limited_reason),
            (want, reason),
            "{current}->{desired}"
        );
        assert_eq!(d.limited, want != desired);
    }
}

fn rules(
    pods: i32,
    pods_period: i32,
    percent: i32,
    percent_period: i32,
    window: i32,
) -> HPAScalingRules {
    let mut policies = vec![];
    if pods != 0 {
        policies.push(HPAScalingPolicy {
            type_: "Pods".into(),
            value: pods,
            period_seconds: pods_period,
        });
    }
    if percent != 0 {
        policies.push(HPAScalingPolicy {
            type_: "Percent".into(),
            value: percent,
            period_seconds: percent_period,
        });
    }
    HPAScalingRules {
        policies: Some(policies),
        select_policy: Some("Max".into()),
        stabilization_window_seconds: Some(window),
        tolerance: None,
    }
}

/// Events spread evenly over the last `period` seconds (each in the middle of its slot).
fn spread(changes: &[i32], period: f64) -> Vec<ScaleEvent> {
    let seg = period / changes.len() as f64;
    changes
        .iter()
        .enumerate()
        .map(|(i, c)| ScaleEvent {
            change: *c,
            at: ago((period - seg * (i as f64 + 1.0) + seg / 2.0) as i64),
            outdated: false,
        })
        .collect()
}

struct RateCase {
    up: Option<HPAScalingRules>,
    down: Option<HPAScalingRules>,
    ups: Vec<ScaleEvent>,
    downs: Vec<ScaleEvent>,
    min: i32,
    max: i32,
    current: i32,
    desired: i32,
}

fn rate(c: RateCase) -> (i32, &'static str) {
    let b = Behavior::resolve(
        &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior {
            scale_up: c.up,
            scale_down: c.down.map(|mut d| {
                // Rate limits alone: no stabilization.
                d.stabilization_window_seconds = Some(0);
                d
            }),
        },
        Duration::ZERO,
    );
    let mut h = History {
        recommendations: vec![],
        scale_ups: c.ups,
        scale_downs: c.downs,
    };
    let d =
        behavior::normalize_with_behavior(&mut h, &b, c.current, c.desired, c.min, c.max, now());
    (d.replicas, d.limited_reason)
}

fn rc(current: i32, desired: i32, min: i32, max: i32) -> RateCase {
    RateCase {
        up: None,
        down: None,
        ups: vec![],
        downs: vec![],
        min,
        max,
        current,
        desired,
    }
}

#[test]
fn scaling_policies_without_history() {
    let up = |r, c: RateCase| RateCase { up: Some(r), ..c };
    let down = |r, c: RateCase| RateCase { down: Some(r), ..c };
    assert_eq!(rate(rc(5, 7, 3, 8)), (7, "DesiredWithinRange"));
    assert_eq!(rate(rc(3, 1, 2, 8)), (2, "TooFewReplicas"));
    assert_eq!(rate(rc(20, 1000, 1, 10)), (10, "TooManyReplicas"));
    assert_eq!(rate(rc(100, 1000, 100, 150)), (150, "TooManyReplicas"));
    assert_eq!(
        rate(up(rules(0, 0, 1, 60, 0), rc(3, 1000, 1, 2000))),
        (4, "ScaleUpLimit")
    );
    assert_eq!(
        rate(down(rules(20, 60, 0, 0, 0), rc(1000, 3, 3, 2000))),
        (980, "ScaleDownLimit")
    );
    // Defaults: 4 pods or 100 % per 15 s, whichever is more.
    assert_eq!(rate(rc(10, 50, 1, 1000)), (20, "ScaleUpLimit"));
    assert_eq!(
        rate(up(rules(100, 60, 100, 60, 0), rc(10, 500, 1, 1000))),
        (110, "ScaleUpLimit")
    );
    assert_eq!(
        rate(up(rules(2, 60, 100, 60, 0), rc(10, 500, 1, 1000))),
        (20, "ScaleUpLimit")
    );
    assert_eq!(
        rate(up(rules(100, 60, 0, 0, 0), rc(10, 50, 1, 1000))),
        (50, "DesiredWithinRange")
    );
    assert_eq!(
        rate(up(rules(30, 60, 0, 0, 0), rc(10, 50, 1, 1000))),
        (40, "ScaleUpLimit")
    );
    assert_eq!(
        rate(up(rules(0, 0, 200, 60, 0), rc(10, 50, 1, 1000))),
        (30, "ScaleUpLimit")
    );
    assert_eq!(
        rate(down(rules(20, 60, 1, 60, 300), rc(100, 2, 1, 1000))),
        (80, "ScaleDownLimit")
    );
    assert_eq!(
        rate(down(rules(2, 60, 1, 60, 300), rc(100, 2, 1, 1000))),
        (98, "ScaleDownLimit")
    );
    assert_eq!(
        rate(down(rules(100, 60, 0, 0, 300), rc(10, 0, 1, 1000))),
        (1, "TooFewReplicas")
    );
    assert_eq!(
        rate(down(rules(0, 0, 100, 60, 300), rc(10, 2, 5, 1000))),
        (5, "TooFewReplicas")
    );
    assert_eq!(
        rate(down(rules(5, 60, 0, 0, 300), rc(10, 2, 1, 1000))),
        (5, "ScaleDownLimit")
    );
    assert_eq!(
        rate(down(rules(0, 0, 50, 60, 300), rc(10, 5, 1, 1000))),
        (5, "DesiredWithinRange")
    );
}

#[test]
fn scaling_policies_count_recent_rescales() {
    let ev = |c: &[i32]| spread(c, 120.0);
    let up = |r, ups, c: RateCase| RateCase {
        up: Some(r),
        ups,
        ..c
    };
    let down = |r, downs, c: RateCase| RateCase {
        down: Some(r),
        downs,
        ..c
    };
    assert_eq!(
        rate(up(
            rules(300, 60, 0, 0, 0),
            ev(&[1, 5, 9]),
            rc(100, 500, 1, 200)
        )),
        (200, "TooManyReplicas")
    );
    assert_eq!(
        rate(up(
            rules(5, 120, 0, 0, 0),
            ev(&[1, 5, 9]),
            rc(100, 500, 1, 1000)
        )),
        (100, "ScaleUpLimit")
    );
    assert_eq!(
        rate(up(
            rules(150, 120, 0, 0, 0),
            ev(&[1, 5, 9]),
            rc(100, 500, 1, 1000)
        )),
        (235, "ScaleUpLimit")
    );
    assert_eq!(
        rate(up(
            rules(0, 0, 200, 120, 0),
            ev(&[1, 5, 9]),
            rc(100, 500, 1, 1000)
        )),
        (255, "ScaleUpLimit")
    );
    let mixed = RateCase {
        downs: ev(&[2]),
        ..up(rules(0, 0, 300, 300, 0), ev(&[4]), rc(6, 24, 1, 1000))
    };
    assert_eq!(rate(mixed), (16, "ScaleUpLimit"));
    assert_eq!(
        rate(RateCase {
            downs: ev(&[1, 5, 9]),
            ..rc(10, 5, 1, 1000)
        }),
        (5, "DesiredWithinRange")
    );
    assert_eq!(
        rate(down(
            rules(115, 120, 0, 0, 300),
            ev(&[1, 5, 9]),
            rc(100, 0, 1, 1000)
        )),
        (1, "TooFewReplicas")
    );
    assert_eq!(
        rate(down(
            rules(130, 120, 0, 0, 300),
            ev(&[1, 5, 9]),
            rc(100, 0, 5, 1000)
        )),
        (5, "TooFewReplicas")
    );
    assert_eq!(
        rate(down(
            rules(5, 120, 0, 0, 300),
            ev(&[1, 5, 9]),
            rc(100, 2, 1, 1000)
        )),
        (100, "ScaleDownLimit")
    );
    assert_eq!(
        rate(down(
            rules(0, 0, 50, 120, 300),
            ev(&[2, 4, 6]),
            rc(100, 0, 1, 1000)
        )),
        (56, "ScaleDownLimit")
    );
    let mixed = RateCase {
        ups: ev(&[2]),
        ..down(rules(0, 0, 50, 180, 0), ev(&[4]), rc(10, 1, 1, 1000))
    };
    assert_eq!(rate(mixed), (6, "ScaleDownLimit"));
    assert_eq!(
        rate(down(
            rules(0, 0, 10, 120, 300),
            ev(&[10, 10, 10]),
            rc(100, 0, 1, 1000)
        )),
        (100, "ScaleDownLimit")
    );
    assert_eq!(
        rate(down(
            rules(0, 0, 1000, 120, 300),
            ev(&[10, 10, 10]),
            rc(10, 5, 1, 1000)
        )),
        (5, "DesiredWithinRange")
    );
    let e4 = || spread(&[8, 12, 9, 11], 120.0);
    assert_eq!(
        rate(up(rules(1000, 60, 0, 0, 0), e4(), rc(100, 200, 1, 1000))),
        (200, "DesiredWithinRange")
    );
    assert_eq!(
        rate(down(
            rules(1000, 30, 100, 60, 300),
            e4(),
            rc(100, 5, 1, 1000)
        )),
        (5, "DesiredWithinRange")
    );
}

#[test]
fn select_policy_min_and_disabled() {
    let mut r = rules(2, 60, 50, 60, 300);
    r.select_policy = Some("Min".into());
    let b = Behavior::resolve(
        &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior {
            scale_up: Some(r.clone()),
            scale_down: Some(r),
        },
        Duration::ZERO,
    );
    let h = History::default();
    assert_eq!(behavior::scale_up_limit(&h, &b.scale_up, 1, now()), 2);
    assert_eq!(behavior::scale_down_limit(&h, &b.scale_down, 5, now()), 3);
    let mut off = rules(4, 15, 0, 0, 0);
    off.select_policy = Some("Disabled".into());
    let b = Behavior::resolve(
        &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior {
            scale_up: Some(off.clone()),
            scale_down: Some(off),
        },
        Duration::ZERO,
    );
    let mut h = History::default();
    let d = behavior::normalize_with_behavior(&mut h, &b, 3, 10, 1, 20, now());
    assert_eq!(
        (d.replicas, d.limited_reason, d.limited),
        (3, "ScaleUpLimit", true)
    );
    let d = behavior::normalize_with_behavior(&mut h, &b, 3, 1, 1, 20, now());
    assert_eq!((d.replicas, d.limited_reason), (3, "ScaleDownLimit"));
}

#[test]
fn behavior_defaults_follow_the_apiserver_and_the_flag() {
    let b = Behavior::resolve(&Default::default(), Duration::from_secs(300));
    assert_eq!(b.scale_up.stabilization_window_seconds, 0);
    assert_eq!(b.scale_down.stabilization_window_seconds, 300);
    assert_eq!(b.scale_up.policies.len(), 2);
    assert_eq!(b.scale_down.policies[0].value, 100);
    assert_eq!(b.scale_down.select, behavior::Select::Max);
}

#[test]
fn stabilization_windows_with_behavior() {
    let b = |up: i32, down: i32| Behavior {
        scale_up: behavior::Rules {
            stabilization_window_seconds: up,
            select: behavior::Select::Max,
            policies: vec![],
        },
        scale_down: behavior::Rules {
            stabilization_window_seconds: down,
            select: behavior::Select::Max,
            policies: vec![],
        },
    };
    for (recs, current, desired, up, down, want, stored) in [
        (vec![], 100, 5, 0, 0, 5, vec![5]),
        (
            vec![rec(4, 120), rec(5, 60)],
            100,
            3,
            0,
            180,
            5,
            vec![4, 5, 3],
        ),
        (
            vec![rec(4, 120), rec(5, 60)],
            1,
            7,
            300,
            0,
            4,
            vec![4, 5, 7],
        ),
        (
            vec![rec(1, 120), rec(2, 60)],
            100,
            3,
            300,
            0,
            3,
            vec![1, 2, 3],
        ),
        (
            vec![rec(4, 120), rec(5, 60)],
            1,
            3,
            0,
            300,
            3,
            vec![4, 5, 3],
        ),
        (
            vec![rec(10, 600), rec(9, 540)],
            100,
            3,
            0,
            0,
            3,
            vec![10, 3],
        ),
        (
            vec![rec(10, 600), rec(9, 540)],
            1,
            100,
            0,
            0,
            100,
            vec![10, 100],
        ),
        (
            vec![rec(10, 600), rec(4, 60), rec(5, 120), rec(9, 540)],
            100,
            3,
            0,
            180,
            5,
            vec![10, 4, 5, 3],
        ),
        (
            vec![rec(10, 6000), rec(6, 60), rec(5, 120), rec(9, 180)],
            1,
            100,
            300,
            0,
            5,
            vec![100, 6, 5, 9],
        ),
    ] {
        let mut h = History {
            recommendations: recs,
            ..Default::default()
        };
        let (got, _) = behavior::stabilize(&mut h, &b(up, down), current, desired, now());
        assert_eq!(got, want, "{current}->{desired}");
        let kept: Vec<i32> = h.recommendations.iter().map(|r| r.replicas).collect();
        assert_eq!(kept, stored);
    }
    // Both windows: a recommendation going down does not scale up, and vice versa.
    for (recs, desired) in [
        (vec![rec(2, 6000), rec(3, 180)], 1),
        (vec![rec(2, 6000), rec(1, 180)], 3),
    ] {
        let mut h = History {
            recommendations: recs,
            ..Default::default()
        };
        assert_eq!(
            behavior::stabilize(&mut h, &b(300, 300), 2, desired, now()).0,
            2
        );
    }
    // The conditions name the window that held the count back.
    let mut h = History {
        recommendations: vec![rec(5, 60)],
        ..Default::default()
    };
    let pol = Behavior::resolve(&Default::default(), Duration::from_secs(300));
    let d = behavior::normalize_with_behavior(&mut h, &pol, 5, 2, 1, 10, now());
    assert_eq!((d.replicas, d.able_reason), (5, "ScaleDownStabilized"));
}

#[test]
fn rescales_are_recorded_for_the_policies_only_with_behavior() {
    let b = Behavior::resolve(&Default::default(), Duration::from_secs(300));
    let mut h = History::default();
    behavior::record_scale(&mut h, None, 1, 5, now());
    assert!(h.scale_ups.is_empty());
    behavior::record_scale(&mut h, Some(&b), 1, 5, ago(60));
    behavior::record_scale(&mut h, Some(&b), 5, 8, now());
    // The first (older than the 15 s period) slot is reused.
    assert_eq!(h.scale_ups.len(), 1);
    assert_eq!(h.scale_ups[0].change, 3);
    behavior::record_scale(&mut h, Some(&b), 8, 2, now());
    assert_eq!(h.scale_downs[0].change, 6);
}

// ---- metric specs, failures and conditions ----

fn resource_spec(json: serde_json::Value) -> MetricSpec {
    serde_json::from_value(json).unwrap()
}

#[test]
fn resource_metric_statuses_and_names() {
    let pods: Vec<Pod> = (0..3).map(|i| pod(i, &PodSpec::default())).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let ctx = Context {
        pods: &refs,
        namespace: "ns",
        current: 3,
        status_replicas: 3,
        tolerances: TOL,
        readiness: READINESS,
        pod_level_resources: true,
        now: now(),
    };
    let fetched = Ok(pod_metrics(&levels(&[300, 500, 700])));
    let util = resource_spec(
        serde_json::json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 30}}}),
    );
    let o = compute::metric(&util, Fetched::PodMetrics(&fetched), &ctx).unwrap();
    assert_eq!(o.replicas, 5);
    assert_eq!(o.name, "cpu resource utilization (percentage of request)");
    let cur = &o.status.resource.as_ref().unwrap().current;
    assert_eq!(cur.average_utilization, Some(50));
    assert_eq!(cur.average_value.as_ref().unwrap().0, "1");
    let avg = resource_spec(
        serde_json::json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "AverageValue", "averageValue": "500m"}}}),
    );
    let o = compute::metric(&avg, Fetched::PodMetrics(&fetched), &ctx).unwrap();
    assert_eq!((o.replicas, o.name.as_str()), (6, "cpu resource"));
    let cur = &o.status.resource.as_ref().unwrap().current;
    assert_eq!(
        (
            cur.average_utilization,
            cur.average_value.as_ref().unwrap().0.as_str()
        ),
        (None, "1")
    );
    let cont = resource_spec(
        serde_json::json!({"type": "ContainerResource", "containerResource": {
        "name": "cpu", "container": "container2",
        "target": {"type": "Utilization", "averageUtilization": 30}}}),
    );
    let o = compute::metric(&cont, Fetched::PodMetrics(&fetched), &ctx).unwrap();
    assert_eq!(
        o.name,
        "cpu container resource utilization (percentage of request)"
    );
    assert_eq!(
        o.status
            .container_resource
            .as_ref()
            .unwrap()
            .current
            .average_value
            .as_ref()
            .unwrap()
            .0,
        "500m"
    );
    assert_eq!(
        compute::resource_quantity("memory", 100 * 1024 * 1024 * 1000).0,
        "100Mi"
    );
}

#[test]
fn failures_name_upstreams_reasons() {
    let ctx = Context {
        pods: &[],
        namespace: "ns",
        current: 3,
        status_replicas: 3,
        tolerances: TOL,
        readiness: READINESS,
        pod_level_resources: true,
        now: now(),
    };
    let util = resource_spec(
        serde_json::json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 30}}}),
    );
    let down = Err("unable to fetch metrics from resource metrics API: the server is currently unable to handle the request".to_string());
    let f = compute::metric(&util, Fetched::PodMetrics(&down), &ctx).unwrap_err();
    assert_eq!(f.reason, "FailedGetResourceMetric");
    assert_eq!(f.cause, "failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server is currently unable to handle the request");
    assert!(f
        .error
        .starts_with("failed to get cpu resource metric value: failed to get cpu utilization"));
    assert!(f.message().starts_with(
        "the HPA was unable to compute the replica count: failed to get cpu utilization"
    ));
    let cont = resource_spec(
        serde_json::json!({"type": "ContainerResource", "containerResource": {
        "name": "memory", "container": "app", "target": {"type": "Utilization", "averageUtilization": 30}}}),
    );
    let f = compute::metric(&cont, Fetched::PodMetrics(&down), &ctx).unwrap_err();
    assert_eq!(f.reason, "FailedGetContainerResourceMetric");
    assert!(f
        .error
        .starts_with("failed to get app container metric value: "));
    for (spec, reason) in [
        (
            serde_json::json!({"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "1"}}}),
            "FailedGetExternalMetric",
        ),
        (
            serde_json::json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1"}}}),
            "FailedGetPodsMetric",
        ),
        (
            serde_json::json!({"type": "Object", "object": {"metric": {"name": "hits"}, "describedObject": {"kind": "Ingress", "name": "i"}, "target": {"type": "Value", "value": "1"}}}),
            "FailedGetObjectMetric",
        ),
        (
            serde_json::json!({"type": "Bogus"}),
            "InvalidMetricSourceType",
        ),
    ] {
        let fetched = match reason {
            "FailedGetExternalMetric" => Fetched::External(Err("boom".into())),
            "FailedGetPodsMetric" => Fetched::PodValues(Err("boom".into())),
            "FailedGetObjectMetric" => Fetched::Object(Err("boom".into())),
            _ => Fetched::Nothing,
        };
        let f = compute::metric(&resource_spec(spec), fetched, &ctx).unwrap_err();
        assert_eq!(f.reason, reason);
    }
    let none = resource_spec(
        serde_json::json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}),
    );
    let f = compute::metric(&none, Fetched::PodMetrics(&Ok(vec![])), &ctx).unwrap_err();
    assert!(
        f.cause
            .contains("neither an average utilization target nor an average value"),
        "{}",
        f.cause
    );
}

fn ok(replicas: i32, name: &str) -> Result<Outcome, Failure> {
    Ok(Outcome {
        replicas,
        name: name.into(),
        status: Default::default(),
    })
}

fn failed(reason: &'static str) -> Result<Outcome, Failure> {
    Err(Failure {
        reason,
        cause: "boom".into(),
        error: format!("{reason} failed"),
    })
}

#[test]
fn combining_metrics() {
    // The highest proposal wins.
    let c = compute::combine(3, &[ok(2, "cpu"), ok(5, "memory")]);
    assert_eq!((c.replicas, c.metric.as_str()), (Some(5), "memory"));
    assert_eq!(c.scaling_active.1, "ValidMetricFound");
    assert!(c.scaling_active.0 && c.error.is_none());
    // One invalid, the other scales up: act on it, report the error.
    let c = compute::combine(3, &[failed("FailedGetExternalMetric"), ok(5, "cpu")]);
    assert_eq!(c.replicas, Some(5));
    assert_eq!(
        c.error.as_deref(),
        Some(
            "invalid metrics (1 invalid out of 2), first error is: FailedGetExternalMetric failed"
        )
    );
    assert_eq!(c.statuses.len(), 2);
    // One invalid, the other would scale down: do nothing.
    let c = compute::combine(3, &[ok(1, "cpu"), failed("FailedGetExternalMetric")]);
    assert_eq!(c.replicas, None);
    assert_eq!(
        (c.scaling_active.0, c.scaling_active.1.as_str()),
        (false, "FailedGetExternalMetric")
    );
    assert_eq!(
        c.scaling_active.2,
        "the HPA was unable to compute the replica count: boom"
    );
    // All invalid: the first failure's reason.
    let c = compute::combine(
        3,
        &[
            failed("FailedGetResourceMetric"),
            failed("FailedGetPodsMetric"),
        ],
    );
    assert_eq!(
        (c.replicas, c.scaling_active.1.as_str()),
        (None, "FailedGetResourceMetric")
    );
    assert!(c
        .error
        .unwrap()
        .starts_with("invalid metrics (2 invalid out of 2)"));
}

fn ctx_with<'a>(pods: &'a [&'a Pod], current: i32, status_replicas: i32) -> Context<'a> {
    Context {
        pods,
        namespace: "ns",
        current,
        status_replicas,
        tolerances: TOL,
        readiness: READINESS,
        pod_level_resources: true,
        now: now(),
    }
}

#[test]
fn pods_metrics_average_against_the_target() {
    let pods: Vec<Pod> = (0..3).map(|i| pod(i, &PodSpec::default())).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let spec = resource_spec(
        serde_json::json!({"type": "Pods", "pods": {"metric": {"name": "qps"},
        "target": {"type": "AverageValue", "averageValue": "10"}}}),
    );
    let values: PodMetricsInfo = [("pod-0", 10_000), ("pod-1", 20_000), ("pod-2", 30_000)]
        .iter()
        .map(|(n, v)| (n.to_string(), sample(*v)))
        .collect();
    let o = compute::metric(
        &spec,
        Fetched::PodValues(Ok(values)),
        &ctx_with(&refs, 3, 3),
    )
    .unwrap();
    assert_eq!((o.replicas, o.name.as_str()), (6, "pods metric qps"));
    let p = o.status.pods.unwrap();
    assert_eq!(p.current.average_value.unwrap().0, "20");
    let f = compute::metric(
        &spec,
        Fetched::PodValues(Err(
            "unable to fetch metrics from custom metrics API: down".into()
        )),
        &ctx_with(&refs, 3, 3),
    )
    .unwrap_err();
    assert_eq!(f.reason, "FailedGetPodsMetric");
    assert_eq!(
        f.cause,
        "unable to get metric qps: unable to fetch metrics from custom metrics API: down"
    );
    assert!(f.error.starts_with("failed to get pods metric value: "));
}

#[test]
fn object_metrics_value_and_average_value() {
    let pods: Vec<Pod> = (0..3).map(|i| pod(i, &PodSpec::default())).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let value = resource_spec(
        serde_json::json!({"type": "Object", "object": {"metric": {"name": "hits"},
        "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"},
        "target": {"type": "Value", "value": "2"}}}),
    );
    // 4 against 2 over 3 ready pods: 6.
    let o = compute::metric(&value, Fetched::Object(Ok(4_000)), &ctx_with(&refs, 3, 3)).unwrap();
    assert_eq!((o.replicas, o.name.as_str()), (6, "Ingress metric hits"));
    assert_eq!(
        o.status
            .object
            .as_ref()
            .unwrap()
            .current
            .value
            .as_ref()
            .unwrap()
            .0,
        "4"
    );
    // Within tolerance: unchanged; from zero replicas: ceil(ratio) regardless.
    let o = compute::metric(&value, Fetched::Object(Ok(2_100)), &ctx_with(&refs, 3, 3)).unwrap();
    assert_eq!(o.replicas, 3);
    let o = compute::metric(&value, Fetched::Object(Ok(2_100)), &ctx_with(&refs, 0, 0)).unwrap();
    assert_eq!(o.replicas, 2);
    let avg = resource_spec(
        serde_json::json!({"type": "Object", "object": {"metric": {"name": "hits"},
        "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"},
        "target": {"type": "AverageValue", "averageValue": "2"}}}),
    );
    // 10 in total for 2 per pod: 5 replicas; the status reports the per-pod 10/3.
    let o = compute::metric(&avg, Fetched::Object(Ok(10_000)), &ctx_with(&refs, 3, 3)).unwrap();
    assert_eq!(o.replicas, 5);
    assert_eq!(
        o.status.object.unwrap().current.average_value.unwrap().0,
        "3334m"
    );
    let f = compute::metric(
        &value,
        Fetched::Object(Err("gone".into())),
        &ctx_with(&refs, 3, 3),
    )
    .unwrap_err();
    assert_eq!(f.cause, "unable to get metric hits: Ingress on ns web/gone");
}

#[test]
fn external_metrics_sum_their_values() {
    let pods: Vec<Pod> = (0..2).map(|i| pod(i, &PodSpec::default())).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let avg = resource_spec(serde_json::json!({"type": "External", "external": {
        "metric": {"name": "queue", "selector": {"matchLabels": {"q": "jobs"}}},
        "target": {"type": "AverageValue", "averageValue": "10"}}}));
    // 25 + 30 = 55 messages at 10 per replica: 6.
    let o = compute::metric(
        &avg,
        Fetched::External(Ok(vec![25_000, 30_000])),
        &ctx_with(&refs, 2, 2),
    )
    .unwrap();
    assert_eq!(
        (o.replicas, o.name.as_str()),
        (6, "external metric queue(q=jobs)")
    );
    assert_eq!(
        o.status.external.unwrap().current.average_value.unwrap().0,
        "27500m"
    );
    let value = resource_spec(serde_json::json!({"type": "External", "external": {
        "metric": {"name": "queue"}, "target": {"type": "Value", "value": "20"}}}));
    // 55 against 20 with 2 ready pods: ceil(2.75 × 2) = 6.
    let o = compute::metric(
        &value,
        Fetched::External(Ok(vec![25_000, 30_000])),
        &ctx_with(&refs, 2, 2),
    )
    .unwrap();
    assert_eq!(o.replicas, 6);
    assert_eq!(o.status.external.unwrap().current.value.unwrap().0, "55");
    let f = compute::metric(
        &value,
        Fetched::External(Err("no metrics returned from external metrics API".into())),
        &ctx_with(&refs, 2, 2),
    )
    .unwrap_err();
    assert_eq!(f.reason, "FailedGetExternalMetric");
    assert_eq!(
        f.cause,
        "unable to get external metric ns/queue/: no metrics returned from external metrics API"
    );
    // No ready pods to scale from: the ready count is the error.
    let f = compute::metric(
        &value,
        Fetched::External(Ok(vec![55_000])),
        &ctx_with(&[], 2, 2),
    )
    .unwrap_err();
    assert!(
        f.cause.starts_with("unable to calculate ready pods"),
        "{}",
        f.cause
    );
}
