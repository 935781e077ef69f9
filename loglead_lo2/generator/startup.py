"""Start-up block at the head of every ``correct`` log: JVM, Hazelcast, config, server lines.

Between 40 and 95 physical lines per file, all before the service's first request (the
loader's default trimming finds the block by these lines, not by a count). Non-pattern lines
(``Picked up JAVA_TOOL_OPTIONS``, Hazelcast's java.util.logging pairs) are ``raw`` templates;
``@{jul}`` is filled with the line's time in java.util.logging's format
(``Nov 20, 2024 4:29:31 PM``).
"""

from __future__ import annotations

import numpy as np

from loglead_lo2 import SERVICES
from loglead_lo2.generator.templates import CONFIG, body

MIN_LINES = 40
MAX_LINES = 95

PORTS = {"code": 6881, "token": 6882, "service": 6883, "client": 6884, "user": 6885,
         "key": 6886, "refresh-token": 6887}
SERVER = "com.networknt.server.Server"
_CONFIG_FILES = [
    "server.yml", "service.yml", "security.yml", "openapi.yml", "openapi.json", "client.yml",
    "datasource.yml", "hazelcast.yml", "handler.yml", "status.yml", "correlation.yml",
    "body.yml", "audit.yml", "info.yml", "health.yml", "logging.yml", "metrics.yml",
    "primary.crt", "secondary.crt", "cors.yml", "sanitizer.yml", "traceability.yml",
    "prometheus.yml", "validator.yml", "registry.yml", "consul.yml", "portal-registry.yml",
    "values.yml", "startup.yml", "shutdown.yml",
]


def _ip(service: str) -> str:
    return f"172.18.0.{SERVICES.index(service) + 4}"


def _jul(cls: str, msg: str) -> list[tuple[str, bool]]:
    return [(f"@{{jul}} {cls}", True), (f"INFO: {msg}", True)]


def startup_templates(service: str, rng: np.random.Generator) -> list[tuple[str, bool]]:
    """``(template, raw)`` pairs of one service's start-up block (40-95 lines)."""
    ip, port = _ip(service), PORTS[service]
    hz = f"[{ip}]:5701 [dev] [3.12]"
    out: list[tuple[str, bool]] = [
        ("Picked up JAVA_TOOL_OPTIONS: -Xms128m -Xmx512m -XX:+UseG1GC "
         "-Dlight-4j-config-dir=/config -Dlogback.configurationFile=/config/logback.xml", True),
        (body("INFO", SERVER, "init", "server starting"), False),
    ]
    n_config = int(rng.integers(8, len(_CONFIG_FILES) + 1))
    for name in _CONFIG_FILES[:n_config]:
        out.append((body("INFO", CONFIG, "getConfigStream",
                         f"Config loaded from externalized folder for {name} in /config"),
                    False))
    out += [
        (body("INFO", "com.networknt.service.SingletonServiceFactory", "<clinit>",
              "SingletonServiceFactory initialized from service.yml"), False),
        (body("INFO", "com.zaxxer.hikari.HikariDataSource", "<init>",
              "HikariPool-1 - Starting..."), False),
        (body("INFO", "com.zaxxer.hikari.HikariDataSource", "<init>",
              "HikariPool-1 - Start completed."), False),
    ]
    out += _jul("com.hazelcast.config.XmlConfigLocator",
                "Loading 'hazelcast.xml' from classpath.")
    out += _jul("com.hazelcast.instance.AddressPicker",
                "[LOCAL] [dev] [3.12] Prefer IPv4 stack is true, prefer IPv6 addresses is false")
    out += _jul("com.hazelcast.instance.AddressPicker",
                f"[LOCAL] [dev] [3.12] Picked [{ip}]:5701, using socket ServerSocket"
                "[addr=/0.0.0.0,localport=5701], bind any local is true")
    for cls, msg in [
        ("com.hazelcast.system", "Hazelcast 3.12 (20190409 - 915d83a) starting at "
         f"[{ip}]:5701"),
        ("com.hazelcast.system", "Copyright (c) 2008-2019, Hazelcast, Inc. All Rights Reserved."),
        ("com.hazelcast.spi.impl.operationservice.impl.BackpressureRegulator",
         "Backpressure is disabled"),
        ("com.hazelcast.instance.Node", "Creating MulticastJoiner"),
        ("com.hazelcast.spi.impl.operationexecutor.impl.OperationExecutorImpl",
         "Starting 16 partition threads and 9 generic threads (1 dedicated for priority tasks)"),
        ("com.hazelcast.internal.diagnostics.Diagnostics",
         "Diagnostics disabled. To enable add -Dhazelcast.diagnostics.enabled=true to the "
         "JVM arguments."),
        ("com.hazelcast.core.LifecycleService", f"[{ip}]:5701 is STARTING"),
    ]:
        out += _jul(cls, f"{hz} {msg}" if not msg.startswith("[LOCAL]") else msg)
    n_members = SERVICES.index(service) + 1
    members = "\n".join(
        [f"Members {{size:{n_members}, ver:{n_members}}} ["]
        + [f"\tMember [172.18.0.{i + 4}]:5701 - {'this' if i + 1 == n_members else 'member'}"
           for i in range(n_members)]
        + ["]"]
    )
    out += _jul("com.hazelcast.internal.cluster.ClusterService", f"{hz} \n\n{members}\n")
    out += _jul("com.hazelcast.core.LifecycleService", f"{hz} [{ip}]:5701 is STARTED")
    out += [
        (body("INFO", SERVER, "start", f"Http Server started on ip:0.0.0.0 Port:{port}"), False),
        (body("INFO", SERVER, "start", "Registry is disabled. Service is not registered."),
         False),
        (body("INFO", SERVER, "start", f"Server started: oauth2-{service} 2.0.28"), False),
    ]
    return out


def count_lines(templates: list[tuple[str, bool]]) -> int:
    return sum(t.count("\n") + 1 for t, _ in templates)
