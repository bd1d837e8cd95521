//! Unit tests of `types.rs`.

use super::*;

#[test]
fn app_parses_with_unknown_fields_and_open_status() {
    let body = r#"{"app":{"id":"5f0","name":"my-app","region":"osc-fr1","status":"hibernating",
        "url":"https://example.com","base_url":"https://my-app.osc-fr1.scalingo.io",
        "created_at":"2021-03-19T15:01:25.088Z","updated_at":"2021-03-19T15:01:25.088Z",
        "last_deployed_at":null,"force_https":true,"sticky_session":false,"owner":{"id":"u"}}}"#;
    let app = serde_json::from_str::<AppEnvelope>(body).unwrap().app;
    assert_eq!(app.name, "my-app");
    assert_eq!(app.status, AppStatus::Other("hibernating".into()));
    assert_eq!(app.last_deployed_at, None);
    assert!(app.force_https);
}

#[test]
fn minimal_app_parses() {
    let app: App = serde_json::from_str(r#"{"name":"my-app","status":"stopped"}"#).unwrap();
    assert_eq!(app.status, AppStatus::Stopped);
    assert_eq!(app.id, "");
}

#[test]
fn list_entries_with_only_id_and_name_decode() {
    let list: AppsEnvelope = serde_json::from_str(
        r#"{"apps":[{"id":"5f0","name":"bare-app"},
        {"id":null,"name":"nulls-app","status":null,"region":null,"url":null,"force_https":null},
        {"name":"full-app","status":"stopped","region":"osc-fr1"}]}"#,
    )
    .unwrap();
    let names: Vec<&str> = list.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["bare-app", "nulls-app", "full-app"]);
    let bare = &list.apps[0];
    assert_eq!(bare.id, "5f0");
    assert_eq!(bare.status, AppStatus::Unknown);
    assert!(!bare.status.is_known());
    assert!(
        bare.status.may_be_running(),
        "unknown is never taken as stopped"
    );
    assert_eq!((bare.region.as_deref(), bare.url.as_deref()), (None, None));
    assert!(!list.apps[1].force_https);
    assert_eq!(list.apps[1].status, AppStatus::Unknown);
    assert!(!list.apps[2].status.may_be_running());
}

#[test]
fn undecodable_list_entries_are_skipped() {
    let list: AppsEnvelope = serde_json::from_str(
        r#"{"apps":[{"id":"no-name"},{"name":42},"junk",{"name":"good-app"}]}"#,
    )
    .unwrap();
    assert_eq!(list.apps.len(), 1);
    assert_eq!(list.apps[0].name, "good-app");
    let empty: AppsEnvelope = serde_json::from_str(r#"{"apps":null}"#).unwrap();
    assert!(empty.apps.is_empty());
}

#[test]
fn statuses_that_may_be_running() {
    for (status, running) in [
        ("running", true),
        ("scaling", true),
        ("crashed", true),
        ("hibernating", true),
        ("stopped", false),
        ("new", false),
    ] {
        let status = AppStatus::from(status.to_owned());
        assert_eq!(status.may_be_running(), running, "{status}");
        assert!(status.is_known());
    }
}

#[test]
fn autoscalers_decode_tolerantly() {
    let list: AutoscalersEnvelope = serde_json::from_str(
        r#"{"autoscalers":[
        {"id":"as-1","app_id":"a1","container_type":"web","metric":"cpu_consumption",
         "target":0.8,"min_containers":1,"max_containers":4,"disabled":false,"extra":{"x":1}},
        {"id":42,"container_type":"worker"},
        {"id":"as-3","disabled":null,"target":null},
        {"container_type":"web","disabled":true},
        {"id":""}]}"#,
    )
    .unwrap();
    let ids: Vec<&str> = list.autoscalers.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        ["as-1", "42", "as-3"],
        "entries without an id are skipped"
    );
    let full = &list.autoscalers[0];
    assert_eq!(full.container_type, "web");
    assert_eq!(full.target, Some(0.8));
    assert_eq!(
        (full.min_containers, full.max_containers),
        (Some(1), Some(4))
    );
    assert!(!full.disabled);
    assert!(!list.autoscalers[1].disabled, "absent means enabled");
    assert_eq!(list.autoscalers[2].container_type, "");
    let none: AutoscalersEnvelope = serde_json::from_str("{}").unwrap();
    assert!(none.autoscalers.is_empty());
}

#[test]
fn autoscaler_update_body() {
    let body = serde_json::to_string(&AutoscalerUpdate {
        autoscaler: AutoscalerDisabled { disabled: false },
    })
    .unwrap();
    assert_eq!(body, r#"{"autoscaler":{"disabled":false}}"#);
}

#[test]
fn open_enums_round_trip() {
    for s in ["running", "weird"] {
        let status: AppStatus = serde_json::from_str(&format!("\"{s}\"")).unwrap();
        assert_eq!(serde_json::to_string(&status).unwrap(), format!("\"{s}\""));
        assert_eq!(status.as_str(), s);
    }
    assert!(OperationStatus::from("done".to_owned()).is_finished());
    assert!(!OperationStatus::from("queued".to_owned()).is_finished());
}

#[test]
fn operation_and_ps_parse() {
    let op: OperationEnvelope = serde_json::from_str(
        r#"{"operation":{"id":"op-1","app_id":"a","created_at":"x","finished_at":null,
        "status":"error","type":"scale","error":"container web-1 failed to restart"}}"#,
    )
    .unwrap();
    assert_eq!(op.operation.status, OperationStatus::Error);
    assert_eq!(op.operation.kind, "scale");

    let ps: PsEnvelope = serde_json::from_str(
        r#"{"containers":[{"id":"c1","type":"worker","type_index":1,"label":"worker-1","state":"running"},
        {"id":"c2","type":"web","type_index":1,"label":"web-1","state":"booting","extra":1}]}"#,
    )
    .unwrap();
    assert!(!web_running(&ps.containers));
    let mut running = ps.containers.clone();
    running[1].state = ProcessState::Running;
    assert!(web_running(&running));
    assert!(!web_running(&[]));
}

#[test]
fn formation_and_scale_request() {
    let f: ContainersEnvelope = serde_json::from_str(
        r#"{"containers":[{"name":"web","amount":2,"size":"L"},{"name":"worker","amount":1}]}"#,
    )
    .unwrap();
    assert_eq!(f.containers[1].size, None);
    let body = serde_json::to_string(&ScaleRequest {
        containers: &[ContainerAmount::new("web", 1)],
    })
    .unwrap();
    assert_eq!(body, r#"{"containers":[{"name":"web","amount":1}]}"#);
}

#[test]
fn regions_parse() {
    let r: RegionsEnvelope = serde_json::from_str(
        r#"{"regions":[{"name":"osc-fr1","display_name":"Paris","api":"https://api.osc-fr1.scalingo.com",
        "dashboard":"https://dashboard.scalingo.com","database_api":"https://db-api.osc-fr1.scalingo.com",
        "ssh":"ssh.osc-fr1.scalingo.com:22","default":true}]}"#,
    )
    .unwrap();
    assert_eq!(
        r.regions[0].api.host_str(),
        Some("api.osc-fr1.scalingo.com")
    );
    assert!(r.regions[0].default);
}
