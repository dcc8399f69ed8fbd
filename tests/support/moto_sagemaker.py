"""A moto server for the SageMaker tests, extended with what moto 5.2.5 lacks.

Run: python moto_sagemaker.py PORT

moto answers UpdateEndpoint with HTTP 500. This plugin, loaded into the same process before the
server starts, implements it after the AWS documentation ("Deployment guardrails"):

* the endpoint must be InService and the new EndpointConfig must exist (ValidationException);
* the endpoint turns `Updating`; with a blue/green `DeploymentConfig` the new (green) fleet is
  provisioned, then traffic moves by `TrafficRoutingConfiguration` — ALL_AT_ONCE, CANARY
  (`CanarySize`, then the rest after `WaitIntervalInSeconds`) or LINEAR (`LinearStepSize` every
  `WaitIntervalInSeconds`) — and each bake is watched by the alarms of
  `AutoRollbackConfiguration`; then `TerminationWaitInSeconds` before the blue fleet goes;
* an alarm in state ALARM during a bake rolls the update back: traffic returns to the blue
  fleet, the endpoint returns to `InService` on its old config, and `FailureReason` says why;
* a green fleet that cannot start (a container image whose name contains `broken`, the test's
  stand-in for a failing health check) fails the update the same way;
* progress shows in `PendingDeploymentSummary` (config, variants with `VariantStatus`
  Creating/ActivatingTraffic/Baking and the green fleet's `CurrentWeight`, start time).

Time is real (tests use short waits); the state is advanced whenever the endpoint is read.

The Rust SDK calls CloudWatch with the Smithy RPC v2 CBOR protocol
(`POST /service/GraniteServiceVersion20100801/operation/OPERATION`), which moto 5.2.5 answers
with 404; DescribeAlarms and GetMetricData are served in that protocol here, from moto's
CloudWatch state (GetMetricData by moto's own implementation).

moto drops an EndpointConfig's `ShadowProductionVariants`. Here they are kept after the
CreateEndpointConfig reference: one production variant and one shadow variant at most when
there is a shadow (ValidationException otherwise), each shadow's Model must exist; they come
back in DescribeEndpointConfig, and DescribeEndpoint lists the running config's shadow variants
(`ShadowProductionVariants`, with counts and weights as for production variants).

It also makes moto closer to AWS where the tests depend on it: creating a Model or
EndpointConfig whose name exists is a ValidationException; UpdateEndpointWeightsAndCapacities
without `DesiredInstanceCount` keeps the count. Test-only controls (never part of AWS):
`POST /slipway-test/throttle?count=N` makes the next N SageMaker calls fail with
ThrottlingException (HTTP 400).
"""

import json
import sys
import threading
import time

from moto.core.exceptions import JsonRESTError
from moto.core.utils import utcnow
from moto.sagemaker import models, responses

_lock = threading.RLock()
_throttle = {"left": 0}


class ValidationException(JsonRESTError):
    def __init__(self, message):
        super().__init__("ValidationException", message)


class ThrottlingException(JsonRESTError):
    def __init__(self):
        super().__init__("ThrottlingException", "Rate exceeded")


def _alarm_state(account_id, region, name):
    from moto.cloudwatch.models import cloudwatch_backends

    alarm = cloudwatch_backends[account_id][region].alarms.get(name)
    return alarm.state_value if alarm else "INSUFFICIENT_DATA"


def _schedule(routing):
    """The traffic steps of a blue/green update: [(percent on green, bake seconds)]."""
    kind = (routing or {}).get("Type", "ALL_AT_ONCE")
    wait = int((routing or {}).get("WaitIntervalInSeconds", 0))
    if kind == "CANARY":
        size = routing.get("CanarySize", {})
        first = int(size.get("Value", 10)) if size.get("Type") == "CAPACITY_PERCENT" else 10
        return [(first, wait), (100, 0)]
    if kind == "LINEAR":
        size = routing.get("LinearStepSize", {})
        step = int(size.get("Value", 20)) if size.get("Type") == "CAPACITY_PERCENT" else 20
        steps, w = [], 0
        while w < 100:
            w = min(100, w + max(step, 1))
            steps.append((w, wait if w < 100 else 0))
        return steps
    return [(100, wait)]


class _Update:
    PROVISION = 1.0  # seconds to "create" the green fleet

    def __init__(self, endpoint, backend, config_name, deployment_config):
        self.endpoint = endpoint
        self.backend = backend
        self.old_config = endpoint.endpoint_config_name
        self.old_variants = endpoint.production_variants
        self.config_name = config_name
        self.deployment = deployment_config or {}
        policy = self.deployment.get("BlueGreenUpdatePolicy", {})
        self.steps = _schedule(policy.get("TrafficRoutingConfiguration"))
        self.termination = int(policy.get("TerminationWaitInSeconds", 0))
        rollback = self.deployment.get("AutoRollbackConfiguration", {})
        self.alarms = [a["AlarmName"] for a in rollback.get("Alarms", [])]
        self.started = time.monotonic()
        self.start_time = utcnow()
        self.step = -1
        self.step_started = None

    def _variants(self, status, weight):
        config = self.backend.endpoint_configs[self.config_name]
        return [
            {
                "VariantName": v["VariantName"],
                "CurrentInstanceCount": v.get("InitialInstanceCount"),
                "DesiredInstanceCount": v.get("InitialInstanceCount"),
                "CurrentWeight": weight,
                "DesiredWeight": v.get("InitialVariantWeight", 1.0),
                "VariantStatus": [{"Status": status, "StartTime": self.start_time}],
            }
            for v in config.production_variants
        ]

    def _finish(self, failure=None):
        e = self.endpoint
        if failure:
            e.endpoint_config_name = self.old_config
            e.production_variants = self.old_variants
            e.failure_reason = failure
        else:
            config = self.backend.endpoint_configs[self.config_name]
            e.endpoint_config_name = self.config_name
            e.production_variants = e._process_production_variants(config.production_variants)
            e.failure_reason = None
        e.endpoint_status = "InService"
        e.pending_deployment_summary = None
        e.last_deployment_config = self.deployment or None
        e.last_modified_time = utcnow()
        e._update = None

    def advance(self):
        e = self.endpoint
        now = time.monotonic()
        if now - self.started < self.PROVISION:
            e.pending_deployment_summary = {
                "EndpointConfigName": self.config_name,
                "ProductionVariants": self._variants("Creating", 0.0),
                "StartTime": self.start_time,
            }
            return
        config = self.backend.endpoint_configs[self.config_name]
        for v in config.production_variants:
            model = self.backend._models.get(v["ModelName"])
            image = ""
            if model is not None:
                image = (model.primary_container or {}).get("Image", "")
            if "broken" in image:
                self._finish(
                    "The primary container for production variant "
                    f"{v['VariantName']} did not pass the ping health check. Please check "
                    "CloudWatch logs for this endpoint. The endpoint was rolled back to "
                    f"its previous configuration {self.old_config}."
                )
                return
        if self.step < 0:
            self.step, self.step_started = 0, now
        while True:
            for name in self.alarms:
                if _alarm_state(self.backend.account_id, self.backend.region_name, name) == "ALARM":
                    self._finish(
                        f"Alarm {name} is in ALARM state; the deployment was rolled back to "
                        f"{self.old_config}."
                    )
                    return
            weight, bake = self.steps[self.step]
            if now - self.step_started < bake:
                break
            if self.step + 1 < len(self.steps):
                self.step += 1
                self.step_started = self.step_started + bake
                continue
            if now - self.step_started - bake < self.termination:
                break
            self._finish()
            return
        weight, _ = self.steps[self.step]
        e.pending_deployment_summary = {
            "EndpointConfigName": self.config_name,
            "ProductionVariants": self._variants("Baking", weight / 100.0),
            "StartTime": self.start_time,
        }


def _advance(endpoint):
    update = getattr(endpoint, "_update", None)
    if update is not None:
        update.advance()


# --- moto extensions ------------------------------------------------------------------------

_describe_endpoint = models.SageMakerModelBackend.describe_endpoint


def describe_endpoint(self, endpoint_name):
    with _lock:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is not None:
            _advance(endpoint)
            if getattr(endpoint, "pending_deployment_summary", None) is None:
                endpoint.__dict__.pop("pending_deployment_summary", None)
            # The shadow variants of the config it runs (moto's object keeps none).
            config = self.endpoint_configs.get(endpoint.endpoint_config_name)
            shadows = getattr(config, "shadow_production_variants", None) or []
            endpoint.__dict__.pop("shadow_production_variants", None)
            if shadows:
                endpoint.shadow_production_variants = endpoint._process_production_variants(
                    shadows
                )
        return _describe_endpoint(self, endpoint_name)


def update_endpoint(self, endpoint_name, endpoint_config_name, deployment_config, retain):
    with _lock:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            arn = models.FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
            raise ValidationException(f"Could not find endpoint \"{arn}\".")
        _advance(endpoint)
        if endpoint.endpoint_status != "InService":
            raise ValidationException(
                f"Cannot update in-progress endpoint \"{endpoint.arn}\"."
            )
        if endpoint_config_name not in self.endpoint_configs:
            arn = models.FakeEndpointConfig.arn_formatter(
                endpoint_config_name, self.account_id, self.region_name
            )
            raise ValidationException(f"Could not find endpoint configuration \"{arn}\".")
        if retain and endpoint.__dict__.get("last_deployment_config"):
            deployment_config = endpoint.last_deployment_config
        endpoint.endpoint_status = "Updating"
        endpoint.failure_reason = None
        endpoint._update = _Update(endpoint, self, endpoint_config_name, deployment_config)
        endpoint._update.advance()
        return endpoint.arn


def _guard_duplicate(original, kind, attr):
    def create(self, *args, **kwargs):
        name = kwargs.get(f"{kind}_name") or (args[0] if args else None)
        if name in getattr(self, attr):
            raise ValidationException(
                f"Cannot create already existing {kind.replace('_', ' ')} "
                f"\"{getattr(self, attr)[name].arn if hasattr(getattr(self, attr)[name], 'arn') else name}\"."
            )
        return original(self, *args, **kwargs)

    return create


_weights = models.SageMakerModelBackend.update_endpoint_weights_and_capacities


def update_endpoint_weights_and_capacities(self, endpoint_name, desired_weights_and_capacities):
    with _lock:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is not None:
            _advance(endpoint)
            if endpoint.endpoint_status != "InService":
                raise ValidationException(
                    f"Cannot update in-progress endpoint \"{endpoint.arn}\"."
                )
            current = {v["VariantName"]: v for v in endpoint.production_variants}
            for d in desired_weights_and_capacities:
                if d.get("DesiredInstanceCount") is None and d.get("VariantName") in current:
                    d["DesiredInstanceCount"] = current[d["VariantName"]].get("CurrentInstanceCount")
                if d.get("DesiredWeight") is None and d.get("VariantName") in current:
                    d["DesiredWeight"] = current[d["VariantName"]].get("CurrentWeight")
        return _weights(self, endpoint_name, desired_weights_and_capacities)


models.SageMakerModelBackend.describe_endpoint = describe_endpoint
models.SageMakerModelBackend.update_endpoint = update_endpoint
models.SageMakerModelBackend.update_endpoint_weights_and_capacities = (
    update_endpoint_weights_and_capacities
)
models.SageMakerModelBackend.create_model = _guard_duplicate(
    models.SageMakerModelBackend.create_model, "model", "_models"
)
models.SageMakerModelBackend.create_endpoint_config = _guard_duplicate(
    models.SageMakerModelBackend.create_endpoint_config, "endpoint_config", "endpoint_configs"
)


_create_config_response = responses.SageMakerResponse.create_endpoint_config


def _create_endpoint_config_response(self):
    shadows = self._get_param("ShadowProductionVariants") or []
    name = self._get_param("EndpointConfigName")
    if shadows:
        production = self._get_param("ProductionVariants") or []
        if len(production) != 1 or len(shadows) != 1:
            raise ValidationException(
                "With ShadowProductionVariants, specify one variant for ProductionVariants "
                "and one for ShadowProductionVariants."
            )
        self.sagemaker_backend.validate_production_variants(shadows)
    with _lock:
        result = _create_config_response(self)
        if shadows:
            self.sagemaker_backend.endpoint_configs[name].shadow_production_variants = shadows
    return result


responses.SageMakerResponse.create_endpoint_config = _create_endpoint_config_response


def _update_endpoint_response(self):
    arn = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        deployment_config=self._get_param("DeploymentConfig"),
        retain=self._get_param("RetainDeploymentConfig", False),
    )
    return responses.ActionResult({"EndpointArn": arn})


responses.SageMakerResponse.update_endpoint = _update_endpoint_response

_dispatch = responses.SageMakerResponse.call_action


def call_action(self):
    with _lock:
        if _throttle["left"] > 0:
            _throttle["left"] -= 1
            return 400, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(
                {"__type": "ThrottlingException", "message": "Rate exceeded"}
            )
    return _dispatch(self)


responses.SageMakerResponse.call_action = call_action


def main():
    from flask import request
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)

    def cbor_cloudwatch(environ, start_response):
        import cbor2
        from moto.cloudwatch.models import cloudwatch_backends

        operation = environ["PATH_INFO"].rsplit("/", 1)[-1]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = cbor2.loads(environ["wsgi.input"].read(length)) if length else {}
        auth = environ.get("HTTP_AUTHORIZATION", "")
        region = "us-east-1"
        if "Credential=" in auth:
            region = auth.split("Credential=", 1)[1].split("/")[2]
        headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
        if operation == "GetMetricData":
            from datetime import timezone

            backend = cloudwatch_backends["123456789012"][region]
            queries = body.get("MetricDataQueries", [])
            scan_by = body.get("ScanBy") or "TimestampDescending"
            start, end = body["StartTime"], body["EndTime"]
            try:
                results = backend.get_metric_data(
                    queries=queries, start_time=start, end_time=end, scan_by=scan_by
                )
            except TypeError:
                # moto keeps some timestamps without a zone (UTC): compare them so.
                results = backend.get_metric_data(
                    queries=queries,
                    start_time=start.replace(tzinfo=None),
                    end_time=end.replace(tzinfo=None),
                    scan_by=scan_by,
                )
            out = [
                {"Id": r["id"], "Label": r["label"], "Timestamps": r["timestamps"],
                 "Values": [float(v) for v in r["values"]], "StatusCode": "Complete"}
                for r in results
            ]
            start_response("200 OK", headers)
            return [cbor2.dumps({"MetricDataResults": out, "Messages": []},
                                datetime_as_timestamp=True, timezone=timezone.utc)]
        if operation != "DescribeAlarms":
            start_response("400 Bad Request", headers)
            return [cbor2.dumps({"__type": "UnsupportedOperation", "message": operation})]
        backend = cloudwatch_backends["123456789012"][region]
        names = body.get("AlarmNames") or list(backend.alarms)
        alarms = [
            {"AlarmName": a.name, "AlarmArn": a.alarm_arn, "StateValue": a.state_value,
             "StateReason": a.state_reason or ""}
            for n, a in backend.alarms.items() if n in names
        ]
        start_response("200 OK", headers)
        return [cbor2.dumps({"MetricAlarms": alarms, "CompositeAlarms": []})]

    def test_controls(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/service/GraniteServiceVersion20100801/"):
            return cbor_cloudwatch(environ, start_response)
        if environ.get("PATH_INFO") == "/slipway-test/throttle":
            from urllib.parse import parse_qs

            count = int(parse_qs(environ.get("QUERY_STRING", "")).get("count", ["1"])[0])
            with _lock:
                _throttle["left"] = count
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return app(environ, start_response)

    run_simple("127.0.0.1", port, test_controls, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
