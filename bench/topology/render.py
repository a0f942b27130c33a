"""Render a :class:`~bench.topology.plan.Plan` into config files and a compose project.

Everything here is a pure function of the plan (and the image tag and host
folders), so golden tests can pin the exact output.

Layout of the rendered folder (``configs/`` in a run directory)::

    compose.yaml
    lb-a/keepalived.conf  lb-a/frontend.cfg  lb-a/backend1.cfg ...
    lb-b/...
    servers/srv1.cfg ...
    tls/ca.pem tls/server.crt        (public parts only; the key lives elsewhere)
    files/...                        the user's files (lb.haproxy.files), in every LB HAProxy container
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import jinja2
import yaml

from .. import paths
from ..errors import Problems
from ..results import layout
from ..spec import USER_FILES_MOUNT, format_duration
from . import plan as P  # noqa: N812 - this module calls the plan P throughout
from . import userconfig

LABEL_PROJECT = "org.lbbench.project"
LABEL_RUN = "org.lbbench.run"
LABEL_ROLE = "org.lbbench.role"
LABEL_NODE = "org.lbbench.node"
PROJECT_VALUE = "lbbench"

# Inside every container: configs read-only here, TLS key material here, stats sockets here.
CONFIG_MOUNT = "/etc/lbbench"
TLS_MOUNT = "/etc/lbbench-tls"
RUN_MOUNT = "/run/lbbench"
DUMMY_LUA = "/usr/local/share/lbbench/dummy.lua"
#: Folder of the rendered configs holding the user's files (``lb.haproxy.files``), mounted at USER_FILES_MOUNT.
USER_FILES_DIR = "files"
#: Where every HAProxy process sends the timers of traced requests (a unix datagram socket the collector binds).
TIMERS_SOCKET = f"{RUN_MOUNT}/{layout.TIMERS_SOCKET}"


def _env(user_folder: Path | None = None) -> jinja2.Environment:
    """Templates from ``topology/templates`` (a user's template folder first, so its own partials win there)."""
    folders = [str(paths.TEMPLATES)] if user_folder is None else [str(user_folder), str(paths.TEMPLATES)]
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _timeouts(plan: P.Plan) -> dict[str, str]:
    t = plan.topology.lb.timeouts
    return {name: format_duration(getattr(t, name)) for name in type(t).model_fields}


#: The shipped template of each HAProxy role.
ROLE_TEMPLATES = {"frontend": "frontend.cfg.j2", "backend": "backend.cfg.j2", "monolith": "monolith.cfg.j2"}


def template_context(plan: P.Plan, proc: P.Process | None = None) -> dict[str, Any]:
    """The variables every config template sees (docs/own-config.md lists them); ``proc`` adds that process's own."""
    topo = plan.topology
    ctx: dict[str, Any] = {
        "plan": plan,
        "topo": topo,
        "t": _timeouts(plan),
        "vip": plan.vip,
        "https_port": P.HTTPS_PORT,
        "http_port": P.HTTP_PORT,
        "monitor_port": P.MONITOR_PORT,
        "monitor_uri": P.MONITOR_URI,
        "backend_port_base": P.FRONTEND_BACKEND_PORT_BASE,
        "backend_indexes": list(range(1, topo.lb.backend.processes + 1)),
        "local_addresses": list(plan.local_addresses),
        # the PROXY v2 hops from the frontend to every backend process: one per (backend k, localhost address m)
        "backend_hops": [
            {"name": f"be{k}-{m}", "backend": k, "addr": addr, "port": P.FRONTEND_BACKEND_PORT_BASE + k}
            for k in range(1, topo.lb.backend.processes + 1)
            for m, addr in enumerate(plan.local_addresses, start=1)
        ],
        "servers": list(plan.servers),
        "server_maxconn": topo.servers.maxconn,
        "tls_crt": f"{TLS_MOUNT}/server.pem",
        "files": USER_FILES_MOUNT,
        "global_extra": [],
        "timers_socket": TIMERS_SOCKET,
    }
    if proc is not None:
        limits = topo.lb.backend if proc.kind == "backend" else topo.lb.frontend
        ctx.update(
            proc_label=proc.service,
            kind=proc.kind,
            nbthread=proc.nbthread,
            maxconn=limits.maxconn,
            socket=proc.socket,
            stats_socket=f"{RUN_MOUNT}/{proc.socket}",
            tls=proc.kind in ("frontend", "monolith"),
            index=proc.index,
            backend_binds=[f"{addr}:{P.FRONTEND_BACKEND_PORT_BASE + proc.index}" for addr in plan.local_addresses]
            if proc.kind == "backend"
            else [],
        )
    return ctx


def _render_process(plan: P.Plan, proc: P.Process, env: jinja2.Environment) -> tuple[str, list[tuple[str, str]]]:
    """One LB process's config: its template (the user's or the shipped one), then the user's sections and lines."""
    cfg = plan.topology.lb.haproxy
    user_template = getattr(cfg, proc.kind).template
    field = f"lb.haproxy.{proc.kind}.template"
    try:
        if user_template:
            path = Path(user_template)
            text = _env(path.parent).get_template(path.name).render(**template_context(plan, proc))
        else:
            text = env.get_template(ROLE_TEMPLATES[proc.kind]).render(**template_context(plan, proc))
    except jinja2.TemplateNotFound as exc:
        return "", [(f"{field}: {exc.message or exc.name}: template not found", "check the path; includes are looked up next to the template, then in topology/templates")]
    except jinja2.TemplateSyntaxError as exc:
        return "", [(f"{field}: {exc.filename or user_template} line {exc.lineno}: {exc.message}", "fix the Jinja syntax")]
    except jinja2.UndefinedError as exc:
        return "", [(f"{field}: {user_template}: {exc.message}", "use the variables docs/own-config.md lists")]
    except jinja2.TemplateError as exc:
        return "", [(f"{field}: {user_template}: {exc}", "fix the template")]
    lines, blocks = userconfig.role_additions(cfg, proc.kind)
    text = userconfig.append_sections(text, blocks)
    text, line_problems = userconfig.add_lines(text, lines)
    problems: list[tuple[str, str]] = [(msg, "name a section of that config") for msg in line_problems]
    for missing in userconfig.unreferenced_mount_paths(text, cfg):
        problems.append(
            (
                f"uses {USER_FILES_MOUNT}/{missing} but lb.haproxy.files provides no {missing.split('/', 1)[0]!r}",
                "list the file under lb.haproxy.files",
            )
        )
    needs = userconfig.Needs(
        service=proc.service,
        kind=proc.kind,
        socket=f"{RUN_MOUNT}/{proc.socket}",
        vip=plan.vip if proc.kind in ("frontend", "monolith") else None,
        monitor=("127.0.0.1", P.MONITOR_PORT, P.MONITOR_URI) if proc.kind in ("frontend", "monolith") else None,
        backend_binds=tuple(template_context(plan, proc)["backend_binds"]),
    )
    problems += userconfig.check_needs(text, needs, plan.topology.keepalived.track_frontend)
    return text, problems


def render_configs(plan: P.Plan) -> dict[str, str]:
    """Every HAProxy and keepalived config of the lab, as ``{relative path: text}``.

    Raises :class:`~bench.errors.Problems` listing every problem of the user's
    configuration (``lb.haproxy``) at once.
    """
    env = _env()
    topo = plan.topology
    common = template_context(plan)
    files: dict[str, str] = {}
    # problem -> the processes it was found in; the other node's configs come from the
    # same templates, so only the first node's are asked
    found: dict[tuple[str, str, str], list[str]] = {}
    for node in plan.nodes:
        for proc in node.processes:
            text, problems_here = _render_process(plan, proc, env)
            files[f"{node.name}/{proc.config}"] = text
            if node is plan.nodes[0]:
                for msg, fix in problems_here:
                    found.setdefault((proc.kind, msg, fix), []).append(proc.service)
        peers = [n for n in plan.nodes if n.name != node.name]
        files[f"{node.name}/keepalived.conf"] = env.get_template("keepalived.conf.j2").render(
            **common,
            node=node,
            peers=peers,
            ka=topo.keepalived,
            prefixlen=ipaddress.ip_network(plan.client_subnet).prefixlen,
        )
    if found:
        problems = [(f"{kind} config ({', '.join(services)}): {msg}", fix) for (kind, msg, fix), services in found.items()]
        raise Problems(problems, "the user's HAProxy configuration (lb.haproxy)")
    for server in plan.servers:
        files[f"servers/{server.name}.cfg"] = env.get_template("server.cfg.j2").render(
            **{**common, "global_extra": [f"lua-load-per-thread {DUMMY_LUA}"]},
            proc_label=server.name,
            server=server,
            nbthread=topo.servers.nbthread,
            maxconn=max(topo.servers.maxconn * 4 * len(plan.nodes), 4096),
            socket=server.socket,
            tls=False,
            kind="server",
        )
    return files


def _labels(plan: P.Plan, role: str, node: str | None = None) -> dict[str, str]:
    labels = {LABEL_PROJECT: PROJECT_VALUE, LABEL_RUN: plan.project, LABEL_ROLE: role}
    if node:
        labels[LABEL_NODE] = node
    return labels


def render_compose(
    plan: P.Plan, image: str, config_dir: Path, tls_dir: Path, run_dir: Path, haproxy_image: str | None = None
) -> dict[str, Any]:
    """The compose project for ``plan`` as a dict (dump it with :func:`dump_compose`).

    ``config_dir`` holds the rendered configs, ``tls_dir`` the private TLS files
    and ``run_dir`` the stats sockets; all are host paths bind-mounted into the
    containers. ``haproxy_image`` (a user's HAProxy build) runs the LB HAProxy
    processes instead of ``image``; the namespace owners, keepalived and the
    dummy servers stay on ``image``.
    """
    topo = plan.topology
    sysctls = {
        "net.ipv4.ip_nonlocal_bind": "1",
        "net.ipv4.ip_local_port_range": topo.lb.sysctls.ip_local_port_range,
        "net.ipv4.tcp_tw_reuse": str(topo.lb.sysctls.tcp_tw_reuse),
    }
    services: dict[str, Any] = {}
    for node in plan.nodes:
        node_cfg = f"{config_dir}/{node.name}:{CONFIG_MOUNT}:ro"
        # The namespace owner: holds the node's interfaces, addresses and sysctls.
        services[node.name] = {
            "image": image,
            "hostname": node.name,
            "command": ["sleep", "infinity"],
            "init": True,
            "sysctls": sysctls,
            "networks": {
                "client": {"ipv4_address": node.client_addr},
                "server": {"ipv4_address": node.server_addr},
            },
            "labels": _labels(plan, "node", node.name),
            "stop_grace_period": "2s",
        }
        services[node.keepalived_service] = {
            "image": image,
            "command": ["/usr/local/bin/lbbench-keepalived"],
            "environment": {"LBBENCH_CLIENT_ADDR": node.client_addr},
            # keepalived alone needs these, to own the VIP and send VRRP / gratuitous ARP.
            "cap_add": ["NET_ADMIN", "NET_BROADCAST", "NET_RAW"],
            "network_mode": f"service:{node.name}",
            "depends_on": [node.name],
            "volumes": [node_cfg, f"{run_dir}:{RUN_MOUNT}"],
            "labels": _labels(plan, "keepalived", node.name),
            "stop_grace_period": "2s",
        }
        for proc in node.processes:
            svc: dict[str, Any] = {
                "image": image,
                "command": ["haproxy", "-db", "-f", f"{CONFIG_MOUNT}/{proc.config}"],
                **(_user_build(haproxy_image, proc.config) if haproxy_image and haproxy_image != image else {}),
                # Share the node's network namespace: localhost between frontend and
                # backends is real, and each process keeps its own CPU account.
                "network_mode": f"service:{node.name}",
                "depends_on": [node.name],
                "volumes": [node_cfg, f"{run_dir}:{RUN_MOUNT}"],
                "labels": _labels(plan, proc.kind, node.name),
                "stop_grace_period": "2s",
            }
            if proc.kind in ("frontend", "monolith"):
                svc["volumes"].append(f"{tls_dir}:{TLS_MOUNT}:ro")
            if topo.lb.haproxy.files:
                svc["volumes"].append(f"{config_dir}/{USER_FILES_DIR}:{USER_FILES_MOUNT}:ro")
            if proc.cpus:
                svc["cpuset"] = proc.cpus
            if proc.cpu_limit:
                svc["cpus"] = proc.cpu_limit
            services[proc.service] = svc
    for server in plan.servers:
        services[server.name] = {
            "image": image,
            "hostname": server.name,
            "command": ["haproxy", "-db", "-f", f"{CONFIG_MOUNT}/{server.name}.cfg"],
            "networks": {"server": {"ipv4_address": server.addr}},
            "volumes": [f"{config_dir}/servers:{CONFIG_MOUNT}:ro", f"{run_dir}:{RUN_MOUNT}"],
            "labels": _labels(plan, "server"),
            "stop_grace_period": "2s",
        }
    networks = {
        "client": {
            "name": f"{plan.project}-client",
            "driver": "bridge",
            "ipam": {"config": [{"subnet": plan.client_subnet, "gateway": plan.client_gateway}]},
            "labels": _labels(plan, "client-network"),
        },
        "server": {
            "name": f"{plan.project}-server",
            "driver": "bridge",
            "ipam": {"config": [{"subnet": plan.server_subnet, "gateway": plan.server_gateway}]},
            "labels": _labels(plan, "server-network"),
        },
    }
    return {"name": plan.project, "services": services, "networks": networks}


def _user_build(haproxy_image: str, config: str) -> dict[str, Any]:
    """Service fields that run one LB process on a user's HAProxy image.

    The image's own entrypoint (upstream's adds ``-W``, master-worker) and user
    (upstream's is ``haproxy``) are replaced: lbbench runs ``haproxy -db`` as root
    in the foreground like on the node image, so it can bind :443, read the key
    and create its stats socket in the shared run folder; a config may still drop
    privileges with ``user``/``group``.
    """
    return {
        "image": haproxy_image,
        "entrypoint": ["haproxy"],
        "command": ["-db", "-f", f"{CONFIG_MOUNT}/{config}"],
        "user": "0:0",
    }


def dump_compose(compose: dict[str, Any]) -> str:
    """YAML text of a compose dict, stable for golden tests."""
    return "# Rendered by lbbench; do not edit.\n" + yaml.safe_dump(compose, sort_keys=False, default_flow_style=False)
