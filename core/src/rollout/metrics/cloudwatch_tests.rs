//! The CloudWatch provider: the request a metric makes, what validation refuses, and what an
//! answer reads as.

use super::*;

fn cloudwatch(provider: serde_json::Value) -> Metric {
    serde_json::from_value(serde_json::json!({
        "name": "errors", "successCondition": "result < 1",
        "provider": {"cloudwatch": provider}
    }))
    .unwrap()
}

fn names() -> Names<'static> {
    Names {
        namespace: "default",
        deployment: "api",
        model: "pitch-frames",
        version: "8",
        stable: Some("7"),
        since: "",
    }
}

#[test]
fn a_cloudwatch_metric_asks_its_queries_with_the_versions_in_dimension_values() {
    let m = cloudwatch(serde_json::json!({
        "region": "eu-west-1", "window": "10m",
        "queries": [
            {"id": "errors", "metricStat": {"namespace": "AWS/SageMaker",
                "metricName": "Invocation5XXErrors", "stat": "Sum", "period": 60,
                "dimensions": {"EndpointName": "{{deployment}}", "VariantName": "v-{{version}}"}}},
            {"id": "calls", "metricStat": {"namespace": "AWS/SageMaker",
                "metricName": "Invocations", "stat": "Sum"}},
            {"id": "ratio", "expression": "errors / calls"}
        ]
    }));
    let Some(Request::CloudWatch {
        region,
        window,
        queries,
        returned,
    }) = request(&m, &names())
    else {
        panic!("no CloudWatch request");
    };
    assert_eq!(region.as_deref(), Some("eu-west-1"));
    assert_eq!(window, std::time::Duration::from_secs(600));
    // Without returnData, the last query is `result`.
    assert_eq!(returned, "ratio");
    let dims = &queries[0].metric_stat.as_ref().unwrap().dimensions;
    assert_eq!(dims["EndpointName"], "api");
    assert_eq!(dims["VariantName"], "v-8");
    assert_eq!(
        Request::CloudWatch {
            region,
            window,
            queries,
            returned
        }
        .url(),
        None
    );
}

#[test]
fn a_cloudwatch_metric_is_refused_field_by_field() {
    let m = cloudwatch(serde_json::json!({
        "region": "EU west", "window": "10s",
        "queries": [
            {"id": "Errors", "expression": "{{version}} * 2"},
            {"id": "all", "expression": "SEARCH('{AWS/EC2} CPU', 'Average', 60)"},
            {"id": "b", "metricStat": {"namespace": "{{model}}", "metricName": "x",
                "stat": "Sum", "period": 45, "dimensions": {"V": "{{nope}}"}},
             "returnData": true},
            {"id": "b", "returnData": true}
        ]
    }));
    let c = m.provider.cloudwatch.as_ref().unwrap();
    let fields: Vec<String> = cloudwatch_problems(c).into_iter().map(|(f, _)| f).collect();
    for want in [
        "window",
        "region",
        "queries[0].id",
        "queries[0].expression",
        "queries[1].expression",
        "queries[2].metricStat.namespace",
        "queries[2].metricStat.period",
        "queries[2].metricStat.dimensions",
        "queries[3].id",
        "queries[3]",
        "queries",
    ] {
        assert!(
            fields.contains(&want.to_string()),
            "{want} not in {fields:?}"
        );
    }
    // Refused, so never asked.
    assert_eq!(request(&m, &names()), None);
    // Two providers at once.
    let mut both = m.clone();
    both.provider.http = Some(Default::default());
    let analysis: slipway_crd::model_deployment::Analysis =
        serde_json::from_value(serde_json::json!({ "metrics": [both] })).unwrap();
    let out = problems(&analysis);
    assert!(
        out.iter()
            .any(|(f, why)| f == "spec.strategy.analysis.metrics[0].provider"
                && why.contains("exactly one of prometheus, http and cloudwatch")),
        "{out:?}"
    );
}

#[test]
fn a_cloudwatch_answer_reads_as_its_newest_value_and_no_data_is_no_reading() {
    let answer = serde_json::json!([
        {"id": "calls", "timestamps": [100, 200], "values": [10.0, 20.0]},
        {"id": "ratio", "timestamps": [100, 300, 200], "values": [0.5, 0.25, 0.75]}
    ]);
    assert_eq!(
        cloudwatch_result(&answer, "ratio"),
        Ok(serde_json::json!(0.25))
    );
    let empty = serde_json::json!([{"id": "ratio", "timestamps": [], "values": []}]);
    let why = cloudwatch_result(&empty, "ratio").unwrap_err();
    assert!(why.contains("no data point"), "{why}");
    let why = cloudwatch_result(&answer, "other").unwrap_err();
    assert!(why.contains("nothing for query other"), "{why}");
}
