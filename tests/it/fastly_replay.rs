//! Every KV interaction go-fastly recorded against the live API, replayed through the facade: a
//! mock serves each recorded response only to a request with the recorded method, path and
//! query, and the facade must decode it into what the recording shows.

use base64::Engine as _;
use edgekv::fastly::{
    BulkEntry, BulkOptions, Consistency, DeleteOptions, ListKeys, ListStores, Location, PutOptions,
    WriteMode,
};
use edgekv::policy::RequestPolicy;
use edgekv::{Answer, WithAnswer as _};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::Value;

use crate::support;
use crate::support::{FASTLY_TOKEN, Replay, Replayed, fastly_at};

#[tokio::test]
async fn every_recorded_interaction_replays_through_the_facade() {
    support::replay_every_recording(replay).await;
}

async fn replay(recording: &Replay<'_>) -> Replayed {
    let (request, response) = (recording.request, recording.response);
    let context = recording.context.as_str();
    let url = recording.server.base_url();
    let client = fastly_at(&url, FASTLY_TOKEN, RequestPolicy::default());
    let query = |name: &str| recording.query(name);
    let generation = recording.generation();
    let recorded: Option<Value> = serde_json::from_str(&response.body).ok();
    let succeeded = recording.succeeded();
    let segments = recording.segments();

    match (request.method.as_str(), segments.as_slice()) {
        ("GET", []) => {
            let stores: Vec<_> = client
                .stores(ListStores::default())
                .try_collect()
                .await
                .unwrap();
            let recorded = recorded.unwrap();
            let ids: Vec<&str> = recorded["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap())
                .collect();
            assert_eq!(
                stores.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
                ids,
                "{context}"
            );
        }
        ("POST", []) => {
            let name = serde_json::from_str::<Value>(&request.body).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string();
            let location = query("location").map(|l| match l.as_str() {
                "US" => Location::Us,
                "EU" => Location::Eu,
                "ASIA" => Location::Asia,
                "AUS" => Location::Aus,
                other => panic!("{context}: location {other}"),
            });
            let (store, answer) = client
                .create_store(name, location)
                .with_answer()
                .await
                .unwrap();
            answered(answer, response, context);
            assert_eq!(
                Some(store.id.as_str()),
                recorded.unwrap()["id"].as_str(),
                "{context}"
            );
        }
        ("GET", [store]) => {
            let (info, answer) = client.get_store(store).with_answer().await.unwrap();
            answered(answer, response, context);
            assert_eq!(
                Some(info.name.as_str()),
                recorded.unwrap()["name"].as_str(),
                "{context}"
            );
        }
        ("DELETE", [store]) => {
            let ((), answer) = client.delete_store(store).with_answer().await.unwrap();
            answered(answer, response, context);
        }
        ("GET", [store, "keys"]) => {
            let mut options = ListKeys::new().read_ahead(0);
            options.consistency = query("consistency").map(|c| {
                if c == "eventual" {
                    Consistency::Eventual
                } else {
                    Consistency::Strong
                }
            });
            options.cursor = query("cursor");
            options.limit = query("limit").map(|l| l.parse().unwrap());
            options.prefix = query("prefix");
            let page = client
                .store(*store)
                .key_pages(options)
                .next()
                .await
                .unwrap()
                .unwrap();
            let recorded = recorded.unwrap();
            let keys: Vec<&str> = recorded["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap())
                .collect();
            assert_eq!(page.keys, keys, "{context}");
            assert_eq!(
                page.cursor.as_deref(),
                recorded["meta"]["next_cursor"].as_str(),
                "{context}"
            );
        }
        ("GET", [store, "keys", key]) => {
            let (item, answer) = client.store(*store).get(key).with_answer().await.unwrap();
            let item = item.expect("recorded as found");
            answered(answer, response, context);
            assert_eq!(
                item.generation().to_string(),
                response.header("Generation").unwrap(),
                "{context}"
            );
            assert_eq!(
                item.metadata(),
                response.header("Metadata").filter(|m| !m.is_empty()),
                "{context}"
            );
            assert_eq!(
                item.bytes().await.unwrap(),
                response.body.as_bytes(),
                "{context}"
            );
        }
        ("PUT", [store, "keys", key]) => {
            let mode = match (query("add"), query("append"), query("prepend")) {
                (Some(_), _, _) => WriteMode::Add,
                (_, Some(_), _) => WriteMode::Append,
                (_, _, Some(_)) => WriteMode::Prepend,
                _ => WriteMode::Overwrite,
            };
            let mut options = PutOptions::new().mode(mode);
            options.if_generation_match = generation;
            options.metadata = request.header("Metadata").map(str::to_string);
            let result = client
                .store(*store)
                .put(key, request.body.clone(), options)
                .with_answer()
                .await;
            check(result, succeeded, response, context);
        }
        ("DELETE", [store, "keys", key]) => {
            let mut options = DeleteOptions::new().force(query("force").is_some());
            options.if_generation_match = generation;
            check(
                client
                    .store(*store)
                    .delete(key, options)
                    .with_answer()
                    .await,
                succeeded,
                response,
                context,
            );
        }
        ("PUT", [store, "batch"]) => {
            // The recording's lines carry go-fastly's indentation; the entries are what matter.
            let entries: Vec<BulkEntry> = request
                .body
                .lines()
                .map(|line| serde_json::from_str::<Value>(line.trim()).unwrap())
                .map(|line| {
                    let value = base64::engine::general_purpose::STANDARD
                        .decode(line["value"].as_str().unwrap())
                        .unwrap();
                    BulkEntry::new(line["key"].as_str().unwrap(), value)
                })
                .collect();
            let (report, answer) = client
                .store(*store)
                .bulk_write(entries, &BulkOptions::default())
                .with_answer()
                .await
                .unwrap();
            answered(answer, response, context);
            assert_eq!((report.written, report.failed.len()), (2, 0), "{context}");
        }
        other => panic!("{context}: no facade call for {other:?}"),
    }
    Replayed::Sent
}

/// The recorded answer's request id, as `request_id()` gives it: Fastly's API answers carry no
/// request-id header; the recorded ones carry `X-Served-By` and `X-Timer`.
fn recorded_request_id(response: &support::RecordedResponse) -> String {
    format!(
        "{} {}",
        response.header("X-Served-By").unwrap(),
        response.header("X-Timer").unwrap()
    )
}

/// A succeeding call's answer is the recorded one: its status and request id.
fn answered(answer: Option<Answer>, response: &support::RecordedResponse, context: &str) {
    let answer = answer.unwrap_or_else(|| panic!("{context}: no answer"));
    assert_eq!(answer.status().as_u16(), response.code, "{context}");
    assert_eq!(answer.provider(), edgekv::Provider::Fastly, "{context}");
    assert_eq!(
        answer.request_id(),
        Some(recorded_request_id(response)),
        "{context}"
    );
}

fn check(
    result: Result<((), Option<Answer>), edgekv::Error>,
    succeeded: bool,
    response: &support::RecordedResponse,
    context: &str,
) {
    let code = response.code;
    match result {
        Ok(((), answer)) if succeeded => answered(answer, response, context),
        Err(error) if !succeeded => {
            assert_eq!(error.status().map(|s| s.as_u16()), Some(code), "{context}");
            assert_eq!(error.is_precondition_failed(), code == 412, "{context}");
            assert_eq!(
                error.provider(),
                Some(edgekv::Provider::Fastly),
                "{context}"
            );
            assert!(
                !error.is_retryable(),
                "{context}: a failed condition stays failed"
            );
            let expected = recorded_request_id(response);
            assert_eq!(error.request_id(), Some(expected.as_str()), "{context}");
        }
        other => panic!("{context}: unexpected outcome {other:?}"),
    }
}
