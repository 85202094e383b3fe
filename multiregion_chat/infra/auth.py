"""Token auth of a region: the signing secret and the authorizers of both APIs.

One signing secret serves every region, so a token minted once works in any
region and a client can fail over without a new token. Its value must
therefore be identical everywhere, which a secret generated per region would
not be. The design:

* The secret has a fixed, configured name (``signingSecretName``, default
  ``<appName>/<stage>/token-signing-secret``). Like the bus name, the fixed
  physical name is deliberate: it is the address every region uses to find the
  same secret (and the authorizer reads it by name), so it cannot be a
  generated, per-stack name. The stage is part of it, so two stages do not
  collide.
* With ``signingSecretManaged`` (default), the stack of the first configured
  region creates it with a generated value and Secrets Manager replicates it
  (``ReplicaRegions``) to every other configured region; those stacks refer to
  it by name and deploy after the first (``app.py`` adds the dependency).
* Without it, every stack refers to an existing secret of that name, which the
  operator created and replicated to every region beforehand (README).
* With an OIDC issuer (``jwtIssuer``) there is no secret at all: tokens are the
  issuer's, verified with its published keys (``secret`` is None).

The authorizers are the token authorizer function (``ChatFunctions.authorizer``)
seen from the two APIs: a WebSocket REQUEST authorizer on ``$connect`` (the
token is the ``token`` query parameter; WebSocket authorizers have no result
cache) and an HTTP API Lambda authorizer with simple responses (the
``Authorization`` header; results cached for ``HTTP_RESULTS_CACHE_TTL`` per
header value).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from multiregion_chat.infra.config import ChatConfig

__all__ = [
    "HTTP_IDENTITY_SOURCE",
    "HTTP_RESULTS_CACHE_TTL",
    "WEBSOCKET_IDENTITY_SOURCE",
    "ChatAuth",
]

WEBSOCKET_IDENTITY_SOURCE = "route.request.querystring.token"
HTTP_IDENTITY_SOURCE = "$request.header.Authorization"
# A long poll repeats the same request every few seconds: one authorizer call
# per minute per token instead of one per request. The cost: a token stays
# accepted up to this long after its exp (docs/protocol.md says so).
HTTP_RESULTS_CACHE_TTL = Duration.seconds(60)
# 64 letters and digits: 380 bits for HMAC-SHA256, and no character that needs
# quoting in a shell or a JSON file.
SECRET_LENGTH = 64


class ChatAuth(Construct):
    """The signing secret (created or referenced) and the two API authorizers.

    Attributes:
        secret: the signing secret (an ``ISecret``; created only in the first
            region of a managed deployment; None with an OIDC issuer).
        created: True when this stack creates the secret.
        secret_arn_for_policy: the ARN to grant ``GetSecretValue`` on: the
            secret's own ARN where it is created, else
            ``arn:...:secret:<name>-??????`` (the six characters Secrets
            Manager appends are unknown to a reference by name); None with an
            OIDC issuer.
        websocket_authorizer: the ``$connect`` authorizer.
        http_authorizer: the HTTP routes' authorizer.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ChatConfig,
        region: str,
        authorizer_function: lambda_.IFunction,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        name = config.signing_secret_id
        self.created = (
            config.signing_secret_managed and region == config.primary_region and not config.oidc
        )
        self.secret: secretsmanager.ISecret | None = None
        self.secret_arn_for_policy: str | None = None
        if config.oidc:
            pass  # the issuer's keys, fetched by the authorizer: nothing to create here
        elif self.created:
            created = secretsmanager.Secret(
                self,
                "SigningSecret",
                secret_name=name,
                description=(
                    f"HS256 signing secret of the chat tokens ({config.app_name}, "
                    f"{config.stage}); the same value in every region (replicas)"
                ),
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    password_length=SECRET_LENGTH, exclude_punctuation=True
                ),
                replica_regions=[
                    secretsmanager.ReplicaRegion(region=other)
                    for other in config.other_regions(region)
                ],
                removal_policy=removal_policy,
            )
            self.secret = created
            self.secret_arn_for_policy = created.secret_arn
        else:
            self.secret = secretsmanager.Secret.from_secret_name_v2(self, "SigningSecret", name)
            stack = Stack.of(self)
            self.secret_arn_for_policy = stack.format_arn(
                service="secretsmanager",
                resource="secret",
                resource_name=f"{name}-??????",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )

        self.websocket_authorizer = authorizers.WebSocketLambdaAuthorizer(
            "ConnectAuthorizer",
            authorizer_function,
            authorizer_name="token",
            identity_source=[WEBSOCKET_IDENTITY_SOURCE],
        )
        self.http_authorizer = authorizers.HttpLambdaAuthorizer(
            "HttpAuthorizer",
            authorizer_function,
            authorizer_name="token",
            identity_source=[HTTP_IDENTITY_SOURCE],
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            results_cache_ttl=HTTP_RESULTS_CACHE_TTL,
        )
