//! The Queue suite: SQS semantics every adapter keeps.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8or::store::queue::{
    DeadLetterPolicy, Delivery, Forwarded, OutMessage, Queue, QueueError, QueueSpec, ReceiveOptions,
};
use k8or::store::{peek_dead_letters, redrive};

use super::{eventually, unique, Deadline};

/// Runs the Queue suite against `$factory`, an async expression giving `Arc<dyn Queue>`.
#[macro_export]
macro_rules! queue_conformance {
    ($factory:expr) => {
        $crate::__conformance_tests!(
            $factory,
            queue,
            [
                queue_send_receive_delete,
                queue_send_batch_sends_every_message,
                queue_forward_sends_and_deletes_the_received_message,
                queue_ensure_queue_is_idempotent,
                queue_ensure_queue_applies_changed_settings,
                queue_visibility_timeout_hides_then_redelivers,
                queue_receive_count_grows,
                queue_dead_letter_after_max_receives,
                queue_redrive_one_job_then_the_whole_queue,
                queue_peek_lists_and_leaves_dead_letters,
                queue_delayed_send,
                queue_change_visibility_extends_and_releases,
                queue_stale_receipts,
                queue_depth_counts_visible_in_flight_and_delayed,
                queue_missing_queue_is_not_found,
                queue_long_poll_wakes_on_send,
                queue_batch_receive_and_delete_batch,
                queue_invalid_requests_are_refused,
                queue_eight_receivers_handle_5000_messages_exactly_once,
            ]
        );
    };
}

const LONG: Duration = Duration::from_secs(30);
const MINUTE: Duration = Duration::from_secs(60);

fn spec(name: &str, visibility_secs: u64, dead_letter: Option<(&str, u32)>) -> QueueSpec {
    QueueSpec {
        name: name.to_owned(),
        visibility_timeout: Duration::from_secs(visibility_secs),
        retention: Duration::from_secs(4 * 24 * 3600),
        dead_letter: dead_letter.map(|(queue, max_receive_count)| DeadLetterPolicy {
            queue: queue.to_owned(),
            max_receive_count,
        }),
    }
}

async fn fresh(q: &dyn Queue, visibility_secs: u64) -> String {
    let name = unique("q");
    q.ensure_queue(&spec(&name, visibility_secs, None))
        .await
        .expect("ensure queue");
    name
}

/// A source queue and its dead-letter queue.
async fn fresh_pair(q: &dyn Queue, visibility_secs: u64, max_receives: u32) -> (String, String) {
    let dlq = fresh(q, visibility_secs).await;
    let src = unique("src");
    q.ensure_queue(&spec(&src, visibility_secs, Some((&dlq, max_receives))))
        .await
        .expect("ensure source queue");
    (src, dlq)
}

fn opts(max: usize, wait_secs: u64, visibility_secs: Option<u64>) -> ReceiveOptions {
    ReceiveOptions {
        max_messages: max,
        wait: Duration::from_secs(wait_secs),
        visibility_timeout: visibility_secs.map(Duration::from_secs),
    }
}

fn message(body: &str, attrs: &[(&str, &str)]) -> OutMessage {
    OutMessage {
        body: body.to_owned(),
        delay: Duration::ZERO,
        attributes: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// Receives until one message comes, within `limit`.
async fn receive_one(q: &dyn Queue, name: &str, visibility_secs: Option<u64>) -> Delivery {
    eventually(&format!("a message on {name}"), LONG, || async {
        let mut got = q
            .receive(name, &opts(1, 1, visibility_secs))
            .await
            .expect("receive");
        got.pop()
    })
    .await
}

/// Waits, within `limit`, for a message received past its limit to reach the dead-letter
/// queue, checking on the way that the source never delivers it again; returns it held.
async fn dead_lettered(q: &dyn Queue, src: &str, dlq: &str, limit: Duration) -> Delivery {
    eventually("the message in the dead-letter queue", limit, || async {
        let from_source = q.receive(src, &opts(10, 1, None)).await.expect("receive");
        assert!(
            from_source.is_empty(),
            "delivered after max_receive_count: {from_source:?}"
        );
        q.receive(dlq, &opts(10, 0, Some(30)))
            .await
            .expect("receive dlq")
            .pop()
    })
    .await
}

async fn nothing_visible(q: &dyn Queue, name: &str) -> bool {
    q.receive(name, &opts(10, 0, None))
        .await
        .expect("receive")
        .is_empty()
}

async fn wait_until_empty(q: &dyn Queue, name: &str) {
    eventually(&format!("{name} to be empty"), LONG, || async {
        let d = q.depth(name).await.expect("depth");
        (d.visible == 0 && d.in_flight == 0 && d.delayed == 0).then_some(())
    })
    .await;
}

/// Sends, receives and deletes one message; what comes out is what went in.
pub async fn queue_send_receive_delete(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 30).await;
    let sent = message("hello", &[("traceparent", "00-abc-def-01"), ("k", "v")]);
    let id = q.send(&name, sent.clone()).await.expect("send");
    let d = receive_one(&*q, &name, None).await;
    assert_eq!(d.message_id, id);
    assert_eq!(d.body, "hello");
    assert_eq!(d.attributes, sent.attributes);
    assert_eq!(d.receive_count, 1);
    assert!(d.sent_at_ms > 0);
    q.delete(&name, &d.receipt).await.expect("delete");
    wait_until_empty(&*q, &name).await;
    assert!(q
        .receive(&name, &opts(10, 1, None))
        .await
        .expect("receive")
        .is_empty());
}

/// A batch send gives one id per message, in order, and delivers each once.
pub async fn queue_send_batch_sends_every_message(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 60).await;
    let batch: Vec<OutMessage> = (0..7)
        .map(|i| message(&format!("b{i}"), &[("i", &i.to_string())]))
        .collect();
    let ids = q.send_batch(&name, batch).await.expect("send batch");
    assert_eq!(ids.len(), 7);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        7,
        "ids are distinct"
    );
    let mut got = Vec::new();
    let deadline = Deadline::new("the batch", LONG);
    while got.len() < 7 {
        got.extend(q.receive(&name, &opts(10, 1, None)).await.expect("receive"));
        deadline.tick().await;
    }
    assert_eq!(got.len(), 7);
    for d in &got {
        let i: usize = d.body[1..].parse().expect("a number");
        assert_eq!(d.message_id, ids[i], "ids follow the order of the batch");
        assert_eq!(d.attributes["i"], i.to_string());
    }
    assert!(q
        .send_batch(&name, Vec::new())
        .await
        .expect("empty")
        .is_empty());
}

pub async fn queue_ensure_queue_is_idempotent(q: Arc<dyn Queue>) {
    let name = unique("q");
    assert!(q
        .ensure_queue(&spec(&name, 30, None))
        .await
        .expect("create"));
    assert!(!q.ensure_queue(&spec(&name, 30, None)).await.expect("again"));
}

/// Ensuring an existing queue again applies the settings it is ensured with (a changed
/// queues.toml applies on the next provision): a shorter visibility timeout and a
/// dead-letter queue added, then the dead-letter queue removed.
pub async fn queue_ensure_queue_applies_changed_settings(q: Arc<dyn Queue>) {
    let dlq = fresh(&*q, 30).await;
    let name = fresh(&*q, 30).await;
    assert!(!q
        .ensure_queue(&spec(&name, 1, Some((&dlq, 1))))
        .await
        .expect("ensure again"));
    q.send(&name, message("first", &[])).await.expect("send");
    assert_eq!(receive_one(&*q, &name, None).await.receive_count, 1);
    // Visible again after 1 s, not 30, and received once already: to the dead-letter queue.
    let dead = dead_lettered(&*q, &name, &dlq, Duration::from_secs(15)).await;
    assert_eq!(dead.body, "first");

    assert!(!q
        .ensure_queue(&spec(&name, 1, None))
        .await
        .expect("ensure without"));
    q.send(&name, message("second", &[])).await.expect("send");
    for expected in 1..=2 {
        let d = receive_one(&*q, &name, Some(1)).await;
        assert_eq!((d.body.as_str(), d.receive_count), ("second", expected));
    }
}

/// A received message stays hidden until its visibility timeout passes, then comes back.
pub async fn queue_visibility_timeout_hides_then_redelivers(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 30).await;
    q.send(&name, message("job", &[])).await.expect("send");
    let first = receive_one(&*q, &name, Some(4)).await;
    assert!(
        nothing_visible(&*q, &name).await,
        "a received message is hidden"
    );
    let again = receive_one(&*q, &name, Some(30)).await;
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.body, "job");
    assert_eq!(again.receive_count, 2);
    assert_ne!(
        again.receipt, first.receipt,
        "each receive gives a new receipt"
    );
}

pub async fn queue_receive_count_grows(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 30).await;
    q.send(&name, message("job", &[])).await.expect("send");
    for expected in 1..=3 {
        let d = receive_one(&*q, &name, Some(1)).await;
        assert_eq!(d.receive_count, expected);
    }
}

/// After `max_receive_count` receives, the next receive moves the message to the
/// dead-letter queue instead of delivering it.
pub async fn queue_dead_letter_after_max_receives(q: Arc<dyn Queue>) {
    let (src, dlq) = fresh_pair(&*q, 1, 2).await;
    let id = q
        .send(&src, message("poison", &[("jobId", "j-1")]))
        .await
        .expect("send");
    for expected in 1..=2 {
        let d = receive_one(&*q, &src, Some(1)).await;
        assert_eq!(d.receive_count, expected);
    }
    let dead = dead_lettered(&*q, &src, &dlq, LONG).await;
    assert_eq!(dead.message_id, id);
    assert_eq!(dead.body, "poison");
    assert_eq!(
        dead.attributes.get("jobId").map(String::as_str),
        Some("j-1")
    );
    assert!(nothing_visible(&*q, &src).await);
    wait_until_empty(&*q, &src).await;
}

/// Moves three messages to the dead-letter queue by receiving them past the limit.
async fn dead_letter_three(q: &dyn Queue, src: &str, dlq: &str) -> BTreeMap<String, String> {
    let attrs = BTreeMap::from([("traceparent".to_owned(), "00-t-s-01".to_owned())]);
    for job in ["job-A", "job-B", "job-C"] {
        let mut m = message(&format!("{{\"jobId\":\"{job}\"}}"), &[]);
        m.attributes = attrs.clone();
        q.send(src, m).await.expect("send");
    }
    let mut seen = HashSet::new();
    let deadline = Deadline::new("three first receives", LONG);
    while seen.len() < 3 {
        for d in q
            .receive(src, &opts(10, 1, Some(1)))
            .await
            .expect("receive")
        {
            seen.insert(d.message_id);
        }
        deadline.tick().await;
    }
    eventually("three dead letters", LONG, || async {
        let redelivered = q.receive(src, &opts(10, 1, None)).await.expect("receive");
        assert!(redelivered.is_empty(), "max_receive_count is 1");
        let dead = peek_dead_letters(q, dlq, 10).await.expect("peek");
        (dead.len() == 3).then_some(())
    })
    .await;
    attrs
}

/// Redrive moves one chosen job, then (after a dry run that moves nothing) the rest: each
/// arrives in the source queue with its body and attributes intact and a fresh count.
pub async fn queue_redrive_one_job_then_the_whole_queue(q: Arc<dyn Queue>) {
    let (src, dlq) = fresh_pair(&*q, 1, 1).await;
    let attrs = dead_letter_three(&*q, &src, &dlq).await;

    let one = redrive(
        &*q,
        &dlq,
        &src,
        &|d: &Delivery| d.body.contains("job-B"),
        false,
    )
    .await
    .expect("redrive one");
    assert_eq!(one.matched.len(), 1);
    assert_eq!(one.skipped, 2);
    assert!(one.matched[0].new_message_id.is_some());
    let back = receive_one(&*q, &src, Some(30)).await;
    assert_eq!(back.body, "{\"jobId\":\"job-B\"}");
    assert_eq!(back.attributes, attrs);
    assert_eq!(
        back.receive_count, 1,
        "a redriven message starts counting again"
    );
    q.delete(&src, &back.receipt).await.expect("delete");

    // A dry run reports and moves nothing; it runs on another task, as the API would.
    let (q2, dlq2, src2) = (q.clone(), dlq.clone(), src.clone());
    let dry =
        tokio::spawn(async move { redrive(&*q2, &dlq2, &src2, &|_: &Delivery| true, true).await })
            .await
            .expect("join")
            .expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(dry.matched.len(), 2);
    assert!(dry.matched.iter().all(|m| m.new_message_id.is_none()));
    assert!(nothing_visible(&*q, &src).await);
    let still = eventually("the dead letters released", LONG, || async {
        let dead = peek_dead_letters(&*q, &dlq, 10).await.expect("peek");
        (dead.len() == 2).then_some(dead)
    })
    .await;
    assert!(still.iter().all(|d| !d.body.contains("job-B")));

    let all = redrive(&*q, &dlq, &src, &|_: &Delivery| true, false)
        .await
        .expect("redrive all");
    assert_eq!(all.matched.len(), 2);
    let mut bodies = Vec::new();
    let deadline = Deadline::new("both redriven jobs", LONG);
    while bodies.len() < 2 {
        for d in q
            .receive(&src, &opts(10, 1, Some(30)))
            .await
            .expect("receive")
        {
            assert_eq!(d.receive_count, 1);
            assert_eq!(d.attributes, attrs);
            bodies.push(d.body);
        }
        deadline.tick().await;
    }
    bodies.sort();
    assert_eq!(bodies, ["{\"jobId\":\"job-A\"}", "{\"jobId\":\"job-C\"}"]);
    assert!(peek_dead_letters(&*q, &dlq, 10)
        .await
        .expect("peek")
        .is_empty());
}

/// Peeking lists dead letters without taking them away.
pub async fn queue_peek_lists_and_leaves_dead_letters(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 30).await;
    for i in 0..3 {
        q.send(
            &name,
            message(&format!("dead-{i}"), &[("i", &i.to_string())]),
        )
        .await
        .expect("send");
    }
    let all = eventually("three letters", LONG, || async {
        let found = peek_dead_letters(&*q, &name, 10).await.expect("peek");
        (found.len() == 3).then_some(found)
    })
    .await;
    let mut bodies: Vec<_> = all.iter().map(|d| d.body.clone()).collect();
    bodies.sort();
    assert_eq!(bodies, ["dead-0", "dead-1", "dead-2"]);
    assert_eq!(
        peek_dead_letters(&*q, &name, 2).await.expect("peek").len(),
        2
    );
    eventually("all three visible again", LONG, || async {
        (q.depth(&name).await.expect("depth").visible == 3).then_some(())
    })
    .await;
}

pub async fn queue_delayed_send(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 30).await;
    let mut m = message("later", &[]);
    m.delay = Duration::from_secs(5);
    q.send(&name, m).await.expect("send");
    assert!(
        nothing_visible(&*q, &name).await,
        "a delayed message is hidden"
    );
    eventually(
        "the delayed message counted",
        Duration::from_secs(4),
        || async { (q.depth(&name).await.expect("depth").delayed == 1).then_some(()) },
    )
    .await;
    let d = receive_one(&*q, &name, None).await;
    assert_eq!(d.body, "later");
    assert_eq!(d.receive_count, 1);
}

/// A heartbeat extends the visibility past the first timeout; zero releases at once.
pub async fn queue_change_visibility_extends_and_releases(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 30).await;
    q.send(&name, message("long work", &[]))
        .await
        .expect("send");
    let d = receive_one(&*q, &name, Some(2)).await;
    q.change_visibility(&name, &d.receipt, MINUTE)
        .await
        .expect("extend");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        nothing_visible(&*q, &name).await,
        "still hidden after the first timeout"
    );
    q.change_visibility(&name, &d.receipt, Duration::ZERO)
        .await
        .expect("release");
    let again = receive_one(&*q, &name, Some(30)).await;
    assert_eq!(again.message_id, d.message_id);
    assert_eq!(again.receive_count, 2);
}

/// An old receipt: deleting with it does nothing (and succeeds); changing visibility with
/// it is `ReceiptExpired`. After a delete, the last receipt is stale too.
pub async fn queue_stale_receipts(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 30).await;
    q.send(&name, message("m", &[])).await.expect("send");
    let old = receive_one(&*q, &name, Some(1)).await;
    let new = receive_one(&*q, &name, Some(30)).await;
    assert_eq!(old.message_id, new.message_id);
    q.delete(&name, &old.receipt)
        .await
        .expect("a stale delete succeeds");
    assert!(matches!(
        q.change_visibility(&name, &old.receipt, Duration::ZERO)
            .await,
        Err(QueueError::ReceiptExpired)
    ));
    q.change_visibility(&name, &new.receipt, MINUTE)
        .await
        .expect("the message is still there, held by the new receipt");
    eventually("one message in flight", LONG, || async {
        (q.depth(&name).await.expect("depth").in_flight == 1).then_some(())
    })
    .await;
    q.delete(&name, &new.receipt).await.expect("delete");
    wait_until_empty(&*q, &name).await;
    assert!(matches!(
        q.change_visibility(&name, &new.receipt, MINUTE).await,
        Err(QueueError::ReceiptExpired)
    ));
}

pub async fn queue_depth_counts_visible_in_flight_and_delayed(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 30).await;
    let empty = q.depth(&name).await.expect("depth");
    assert_eq!((empty.visible, empty.in_flight, empty.delayed), (0, 0, 0));
    q.send(&name, message("taken", &[])).await.expect("send");
    receive_one(&*q, &name, Some(60)).await;
    q.send(&name, message("waiting", &[])).await.expect("send");
    let mut later = message("later", &[]);
    later.delay = Duration::from_secs(120);
    q.send(&name, later).await.expect("send");
    eventually("depth 1/1/1", LONG, || async {
        let d = q.depth(&name).await.expect("depth");
        (d.visible == 1 && d.in_flight == 1 && d.delayed == 1).then_some(())
    })
    .await;
}

pub async fn queue_missing_queue_is_not_found(q: Arc<dyn Queue>) {
    let real = fresh(&*q, 30).await;
    q.send(&real, message("m", &[])).await.expect("send");
    let receipt = receive_one(&*q, &real, None).await.receipt;
    let missing = unique("missing");
    let not_found = |r: Result<(), QueueError>| matches!(r, Err(QueueError::NotFound(_)));
    assert!(not_found(
        q.send(&missing, message("m", &[])).await.map(drop)
    ));
    assert!(not_found(
        q.receive(&missing, &opts(1, 0, None)).await.map(drop)
    ));
    assert!(not_found(q.depth(&missing).await.map(drop)));
    assert!(not_found(q.delete(&missing, &receipt).await));
    assert!(not_found(
        q.change_visibility(&missing, &receipt, MINUTE).await
    ));
    let orphan = spec(&unique("orphan"), 30, Some((&missing, 3)));
    assert!(not_found(q.ensure_queue(&orphan).await.map(drop)));
}

/// A long poll returns the message sent while it waits.
pub async fn queue_long_poll_wakes_on_send(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 30).await;
    let (q2, name2) = (q.clone(), name.clone());
    let waiting = tokio::spawn(async move { q2.receive(&name2, &opts(1, 10, None)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    q.send(&name, message("wake up", &[])).await.expect("send");
    let got = waiting.await.expect("join").expect("receive");
    assert_eq!(got.len(), 1, "the waiting receive got the message");
    assert_eq!(got[0].body, "wake up");
}

pub async fn queue_batch_receive_and_delete_batch(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 60).await;
    for i in 0..15 {
        q.send(&name, message(&format!("m{i}"), &[]))
            .await
            .expect("send");
    }
    let mut seen = HashSet::new();
    let mut receipts = Vec::new();
    let deadline = Deadline::new("all 15 messages", LONG);
    while seen.len() < 15 {
        let got = q.receive(&name, &opts(10, 1, None)).await.expect("receive");
        assert!(got.len() <= 10);
        for d in got {
            assert!(seen.insert(d.body.clone()), "{} delivered twice", d.body);
            receipts.push(d.receipt);
        }
        deadline.tick().await;
    }
    let results = q
        .delete_batch(&name, &receipts)
        .await
        .expect("delete batch");
    assert_eq!(results.len(), 15);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    wait_until_empty(&*q, &name).await;
    // Deleting again is deleting with stale receipts: fine.
    let again = q.delete_batch(&name, &receipts[..3]).await.expect("again");
    assert!(again.iter().all(Result::is_ok));
}

pub async fn queue_invalid_requests_are_refused(q: Arc<dyn Queue>) {
    let name = fresh(&*q, 30).await;
    let invalid = |r: Result<(), QueueError>| matches!(r, Err(QueueError::Invalid(_)));
    for max in [0, 11] {
        assert!(
            invalid(q.receive(&name, &opts(max, 0, None)).await.map(drop)),
            "max_messages {max}"
        );
    }
    let mut m = message("m", &[]);
    m.delay = Duration::from_secs(16 * 60);
    assert!(
        invalid(q.send(&name, m).await.map(drop)),
        "delay over 15 minutes"
    );
}

/// Eight receivers share 5,000 messages, deleting each after handling it: every message
/// is handled exactly once and none is lost.
pub async fn queue_eight_receivers_handle_5000_messages_exactly_once(q: Arc<dyn Queue>) {
    const MESSAGES: usize = 5_000;
    const WORKERS: usize = 8;
    let name = fresh(&*q, 120).await;
    let senders: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (q, name) = (q.clone(), name.clone());
            tokio::spawn(async move {
                for i in (w..MESSAGES).step_by(WORKERS) {
                    q.send(&name, message(&i.to_string(), &[]))
                        .await
                        .expect("send");
                }
            })
        })
        .collect();
    for s in senders {
        s.await.expect("sender");
    }

    let handled: Arc<Vec<AtomicU32>> = Arc::new((0..MESSAGES).map(|_| AtomicU32::new(0)).collect());
    let done = Arc::new(AtomicUsize::new(0));
    let redelivered = Arc::new(AtomicUsize::new(0));
    let receivers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (q, name) = (q.clone(), name.clone());
            let (handled, done, redelivered) = (handled.clone(), done.clone(), redelivered.clone());
            tokio::spawn(async move {
                while done.load(Ordering::SeqCst) < MESSAGES {
                    let got = q.receive(&name, &opts(10, 1, None)).await.expect("receive");
                    let mut receipts = Vec::with_capacity(got.len());
                    for d in got {
                        if d.receive_count != 1 {
                            redelivered.fetch_add(1, Ordering::SeqCst);
                        }
                        let i: usize = d.body.parse().expect("a message number");
                        if handled[i].fetch_add(1, Ordering::SeqCst) == 0 {
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        receipts.push(d.receipt);
                    }
                    if !receipts.is_empty() {
                        let results = q.delete_batch(&name, &receipts).await.expect("delete");
                        assert!(results.iter().all(Result::is_ok));
                    }
                }
            })
        })
        .collect();
    let all = async {
        for r in receivers {
            r.await.expect("receiver");
        }
    };
    tokio::time::timeout(Duration::from_secs(600), all)
        .await
        .expect("the receivers finished");
    let twice: Vec<usize> = (0..MESSAGES)
        .filter(|i| handled[*i].load(Ordering::SeqCst) != 1)
        .collect();
    assert!(twice.is_empty(), "not handled exactly once: {twice:?}");
    assert_eq!(redelivered.load(Ordering::SeqCst), 0);
    wait_until_empty(&*q, &name).await;
}

/// A stage passing its job on: the message goes to the next queue with its attributes,
/// and the received one is gone for good. A missing target sends nothing and deletes
/// nothing; a missing source still sends, and says the delete failed; a stale receipt
/// still sends, and its delete succeeds as a stale delete does.
pub async fn queue_forward_sends_and_deletes_the_received_message(q: Arc<dyn Queue>) {
    let (from, to) = (fresh(&*q, 1).await, fresh(&*q, 30).await);
    q.send(&from, message("stage 1", &[])).await.expect("send");
    let held = receive_one(&*q, &from, None).await;
    let next = message("stage 2", &[("k8or-trace", "t1")]);
    let Forwarded {
        message_id,
        deleted,
    } = q
        .forward(&to, next, &from, &held.receipt)
        .await
        .expect("forward");
    deleted.expect("the received message is deleted");
    let got = receive_one(&*q, &to, Some(60)).await;
    assert_eq!(
        (got.message_id.as_str(), got.body.as_str()),
        (message_id.as_str(), "stage 2")
    );
    assert_eq!(
        got.attributes.get("k8or-trace").map(String::as_str),
        Some("t1")
    );
    // Past the source's 1 s visibility timeout, nothing comes back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(q
        .receive(&from, &opts(10, 1, None))
        .await
        .expect("receive")
        .is_empty());
    wait_until_empty(&*q, &from).await;

    q.send(&from, message("again", &[])).await.expect("send");
    let held = receive_one(&*q, &from, Some(60)).await;
    let missing = unique("missing");
    let r = q
        .forward(&missing, message("lost?", &[]), &from, &held.receipt)
        .await;
    assert!(matches!(r, Err(QueueError::NotFound(_))), "{r:?}");
    q.change_visibility(&from, &held.receipt, MINUTE)
        .await
        .expect("nothing deleted: the receipt still holds the message");
    let r = q
        .forward(&to, message("sent anyway", &[]), &missing, &held.receipt)
        .await
        .expect("sent");
    assert!(
        matches!(r.deleted, Err(QueueError::NotFound(_))),
        "{:?}",
        r.deleted
    );

    q.change_visibility(&from, &held.receipt, Duration::ZERO)
        .await
        .expect("release");
    receive_one(&*q, &from, Some(60)).await;
    let r = q
        .forward(
            &to,
            message("from a stale receipt", &[]),
            &from,
            &held.receipt,
        )
        .await
        .expect("sent");
    r.deleted.expect("a stale delete succeeds");
    let bodies: HashSet<String> = q
        .receive(&to, &opts(10, 1, Some(60)))
        .await
        .expect("receive")
        .into_iter()
        .map(|d| d.body)
        .collect();
    assert!(bodies.contains("sent anyway"), "{bodies:?}");
}
