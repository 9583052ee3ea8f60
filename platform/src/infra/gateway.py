"""Ingress: Envoy Gateway (Gateway API) behind an NLB, TLS from cert-manager (ACME HTTP-01),
one public Gateway with an HTTPS listener per host and an HTTP listener that only redirects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from infra import charts, helm, k8s_objects
from infra.k8s_objects import Manifest

NAMESPACE = "envoy-gateway-system"
CERT_MANAGER_NAMESPACE = "cert-manager"
GATEWAY_NAME = "public"
GATEWAY_CLASS = "envoy"
ISSUER = "letsencrypt"
ROUTES_LABEL = "image-platform/gateway-routes"


@dataclass(frozen=True)
class Listener:
    """An HTTPS listener for one host; cert-manager fills `<section>-tls` for it."""

    section: str
    hostname: str


def listeners(hosts: Sequence[Listener]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            # Plain HTTP exists only for ACME challenges and the redirect to HTTPS.
            "name": "http",
            "protocol": "HTTP",
            "port": 80,
            "allowedRoutes": {"namespaces": {"from": "Same"}},
        }
    ]
    for host in hosts:
        out.append(
            {
                "name": host.section,
                "protocol": "HTTPS",
                "port": 443,
                "hostname": host.hostname,
                "tls": {
                    "mode": "Terminate",
                    "certificateRefs": [
                        {"group": "", "kind": "Secret", "name": f"{host.section}-tls"}
                    ],
                },
                "allowedRoutes": {
                    "kinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
                    "namespaces": {
                        "from": "Selector",
                        "selector": {"matchLabels": {ROUTES_LABEL: "true"}},
                    },
                },
            }
        )
    return out


def gateway_manifests(hosts: Sequence[Listener], acme_email: str) -> list[Manifest]:
    gw_ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY_NAME}
    return [
        {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyProxy",
            "metadata": {"name": "nlb", "namespace": NAMESPACE},
            "spec": {
                "provider": {
                    "type": "Kubernetes",
                    "kubernetes": {
                        "envoyService": {
                            "externalTrafficPolicy": "Local",
                            "annotations": {
                                "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
                                "service.beta.kubernetes.io/aws-load-balancer-scheme": (
                                    "internet-facing"
                                ),
                            },
                        },
                        "envoyDeployment": {"replicas": 2},
                    },
                }
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {
                "controllerName": "gateway.envoyproxy.io/gatewayclass-controller",
                "parametersRef": {
                    "group": "gateway.envoyproxy.io",
                    "kind": "EnvoyProxy",
                    "name": "nlb",
                    "namespace": NAMESPACE,
                },
            },
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "ClusterIssuer",
            "metadata": {"name": ISSUER},
            "spec": {
                "acme": {
                    "server": "https://acme-v02.api.letsencrypt.org/directory",
                    "email": acme_email,
                    "privateKeySecretRef": {"name": f"{ISSUER}-account"},
                    "solvers": [
                        {
                            "http01": {
                                "gatewayHTTPRoute": {
                                    "parentRefs": [
                                        {**gw_ref, "namespace": NAMESPACE, "sectionName": "http"}
                                    ]
                                }
                            }
                        }
                    ],
                }
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {
                "name": GATEWAY_NAME,
                "namespace": NAMESPACE,
                # cert-manager's gateway-shim issues a certificate per HTTPS listener.
                "annotations": {"cert-manager.io/cluster-issuer": ISSUER},
            },
            "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": listeners(hosts)},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "redirect-to-https", "namespace": NAMESPACE},
            "spec": {
                "parentRefs": [{**gw_ref, "sectionName": "http"}],
                "rules": [
                    {
                        "filters": [
                            {
                                "type": "RequestRedirect",
                                "requestRedirect": {"scheme": "https", "statusCode": 301},
                            }
                        ]
                    }
                ],
            },
        },
        {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "ClientTrafficPolicy",
            "metadata": {"name": "tls-floor", "namespace": NAMESPACE},
            "spec": {"targetRefs": [gw_ref], "tls": {"minVersion": "1.2"}},
        },
    ]


class Gateway(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        *,
        hosts: Sequence[Listener],
        acme_email: str,
        vpc_cidr: pulumi.Input[str],
        provider: pulumi.ProviderResource,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:gateway:Gateway", name, None, opts)

        def k8s(manifest: Manifest, deps: Sequence[pulumi.Resource]) -> pulumi.Resource:
            return k8s_objects.register(
                name, manifest, parent=self, provider=provider, depends_on=deps
            )

        gw_ns = k8s(k8s_objects.namespace(NAMESPACE, restricted=False), depends_on)
        # The proxies are the internet-facing entry point; the controller's webhooks and xDS
        # are reached from inside the namespace and the VPC.
        k8s(k8s_objects.allow_all_ingress(NAMESPACE, "public-entrypoint"), [gw_ns])
        cm_ns = k8s(k8s_objects.namespace(CERT_MANAGER_NAMESPACE, restricted=False), depends_on)
        k8s(k8s_objects.default_deny_ingress(CERT_MANAGER_NAMESPACE), [cm_ns])
        k8s(k8s_objects.allow_same_namespace(CERT_MANAGER_NAMESPACE), [cm_ns])
        k8s(
            k8s_objects.allow_from_cidr(CERT_MANAGER_NAMESPACE, vpc_cidr, "control-plane-webhooks"),
            [cm_ns],
        )
        envoy = helm.release(
            "envoy-gateway",
            charts.ENVOY_GATEWAY,
            namespace=NAMESPACE,
            values={"deployment": {"replicas": 2}},
            provider=provider,
            parent=self,
            depends_on=[gw_ns],
        )
        cert_manager = helm.release(
            "cert-manager",
            charts.CERT_MANAGER,
            namespace=CERT_MANAGER_NAMESPACE,
            values={
                "crds": {"enabled": True},
                "config": {
                    "apiVersion": "controller.config.cert-manager.io/v1alpha1",
                    "kind": "ControllerConfiguration",
                    "enableGatewayAPI": True,
                },
            },
            provider=provider,
            parent=self,
            depends_on=[cm_ns, envoy],  # Gateway API CRDs first, then the gateway-shim
        )
        self.resources: list[pulumi.Resource] = [envoy, cert_manager]
        for manifest in gateway_manifests(hosts, acme_email):
            self.resources.append(k8s(manifest, [envoy, cert_manager]))
        self.register_outputs({})
