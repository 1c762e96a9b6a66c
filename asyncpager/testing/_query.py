"""EC2 (DescribeRegions, DescribeInstances) and IAM (ListUsers) over the query
protocol: form-encoded POST bodies in, XML out, as each service writes it."""

from __future__ import annotations

import random
from collections.abc import Callable
from urllib.parse import parse_qsl

from asyncpager.testing._keys import xml_escape
from asyncpager.testing._specs import Ec2Fleet, IamUsers
from asyncpager.testing._wire import (
    Call,
    InvalidToken,
    PageCache,
    Reply,
    Request,
    decode_token,
    encode_token,
    iso_ms,
    iso_s,
)

__all__ = ["Ec2Service", "IamService", "form_params"]

_DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_ACCOUNT = "123456789012"
_TYPES = ["t3.micro", "t3.large", "m6i.xlarge", "c7g.2xlarge", "r6i.4xlarge"]
_STATES = [(16, "running")] * 8 + [(80, "stopped"), (0, "pending")]
_DEFAULT_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-northeast-1",
)


def form_params(request: Request) -> dict[str, str]:
    """The form fields of a query-protocol request (body, or the URL for GETs)."""
    text = request.body.decode("utf-8", "replace") if request.body else request.query
    return dict(parse_qsl(text, keep_blank_values=True))


class _QueryError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# -- EC2 ---------------------------------------------------------------------

_EC2_NS = b' xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'


def ec2_error(status: int, code: str, message: str, request_id: str) -> Reply:
    """EC2's error document: ``<Response><Errors><Error>``."""
    body = (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{xml_escape(message)}</Message>"
        f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
    )
    return Reply(status, _DECL + body.encode(), b"text/xml;charset=UTF-8")


class _Ec2Templates:
    """64 instance variants with holes for the per-instance fields."""

    def __init__(self, seed: int, region: str) -> None:
        rng = random.Random(f"ec2:{seed}:{region}")
        self.variants: list[bytes] = []
        for _ in range(64):
            code, state = rng.choice(_STATES)
            zone = region + rng.choice("abc")
            launched = iso_ms(1_700_000_000 + rng.uniform(0, 3e7))
            self.variants.append(
                (
                    "<item><instanceId>%s</instanceId>"
                    f"<imageId>ami-{rng.getrandbits(68):017x}</imageId>"
                    f"<instanceState><code>{code}</code><name>{state}</name></instanceState>"
                    "<privateDnsName>ip-%s.ec2.internal</privateDnsName><dnsName/><reason/>"
                    "<keyName>ops</keyName><amiLaunchIndex>%d</amiLaunchIndex><productCodes/>"
                    f"<instanceType>{rng.choice(_TYPES)}</instanceType>"
                    f"<launchTime>{launched}</launchTime>"
                    f"<placement><availabilityZone>{zone}</availabilityZone><groupName/>"
                    "<tenancy>default</tenancy></placement>"
                    "<monitoring><state>disabled</state></monitoring>"
                    f"<subnetId>subnet-{rng.getrandbits(68):017x}</subnetId>"
                    f"<vpcId>vpc-{rng.getrandbits(68):017x}</vpcId>"
                    "<privateIpAddress>%s</privateIpAddress><sourceDestCheck>true</sourceDestCheck>"
                    f"<groupSet><item><groupId>sg-{rng.getrandbits(68):017x}</groupId>"
                    "<groupName>default</groupName></item></groupSet>"
                    "<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>"
                    "<rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping/>"
                    "<virtualizationType>hvm</virtualizationType>"
                    "<tagSet><item><key>Name</key><value>%s</value></item>"
                    f"<item><key>team</key><value>{rng.choice(['web', 'data', 'ml'])}</value>"
                    "</item></tagSet><hypervisor>xen</hypervisor><networkInterfaceSet/>"
                    "<ebsOptimized>false</ebsOptimized></item>"
                ).encode()
            )


class Ec2Service:
    """DescribeRegions and DescribeInstances for a generated fleet."""

    name = "ec2"

    def __init__(self, fleet: Ec2Fleet | None, cache: PageCache) -> None:
        self.fleet = fleet or Ec2Fleet(regions=_DEFAULT_REGIONS, per_region=0)
        self.cache = cache
        self._templates: dict[str, _Ec2Templates] = {}

    def parse(self, request: Request, region: str) -> Call:
        params = form_params(request)
        operation = params.get("Action") or "Unsupported"
        return Call(self.name, operation, region, request, params, bool(params.get("NextToken")))

    def handle(self, call: Call) -> Reply:
        try:
            if call.operation == "DescribeInstances":
                return self._describe_instances(call)
            if call.operation == "DescribeRegions":
                return self._describe_regions(call)
        except _QueryError as exc:
            return ec2_error(exc.status, exc.code, exc.message, call.request_id)
        return ec2_error(
            400,
            "InvalidAction",
            f"The action {call.operation} is not valid for this web service.",
            call.request_id,
        )

    def throttle_reply(self, call: Call, code: str) -> Reply:
        return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.", call.request_id)

    def internal_error(self, call: Call) -> Reply:
        return ec2_error(
            500,
            "InternalError",
            "An internal error has occurred.",
            call.request_id,
        )

    def _describe_regions(self, call: Call) -> Reply:
        wanted = {v for k, v in call.params.items() if k.startswith("RegionName.")}
        parts = [_DECL, b"<DescribeRegionsResponse", _EC2_NS, b">"]
        parts.append(f"<requestId>{call.request_id}</requestId><regionInfo>".encode())
        for region in self.fleet.regions:
            if wanted and region not in wanted:
                continue
            parts.append(
                f"<item><regionName>{region}</regionName>"
                f"<regionEndpoint>ec2.{region}.amazonaws.com</regionEndpoint>"
                "<optInStatus>opt-in-not-required</optInStatus></item>".encode()
            )
        parts.append(b"</regionInfo></DescribeRegionsResponse>")
        return Reply(200, b"".join(parts), b"text/xml;charset=UTF-8")

    def _describe_instances(self, call: Call) -> Reply:
        params: dict[str, str] = call.params
        for name in params:
            if name.startswith(("Filter.", "InstanceId.")):
                raise _QueryError(
                    400,
                    "InvalidParameterValue",
                    f"{name.split('.')[0]} is not supported by the asyncpager local endpoint",
                )
        fleet = self.fleet
        region = call.region
        per_res = fleet.per_reservation
        count = fleet.per_region if region in fleet.regions else 0
        reservations = -(-count // per_res)
        scope = f"ec2:{region}"
        start = 0
        token = params.get("NextToken")
        if token:
            try:
                start = decode_token(token, scope)
            except InvalidToken:
                raise _QueryError(
                    400, "InvalidParameterValue", f"Invalid value '{token}' for nextToken"
                ) from None
        page = reservations - start
        if "MaxResults" in params:
            try:
                max_results = int(params["MaxResults"])
            except ValueError:
                max_results = -1
            if not 5 <= max_results <= 1000:
                raise _QueryError(
                    400,
                    "InvalidParameterValue",
                    f"Value ( {params['MaxResults']} ) for parameter maxResults is invalid. "
                    "Expecting a value between 5 and 1000.",
                )
            page = max(1, max_results // per_res)
        stop = min(reservations, start + page)
        templates = self._templates.get(region)
        if templates is None:
            templates = self._templates[region] = _Ec2Templates(fleet.seed, region)
        variants = templates.variants
        r_index = fleet.regions.index(region) if region in fleet.regions else 0
        salt = random.Random(f"ec2ids:{fleet.seed}").getrandbits(60)
        parts = [_DECL, b"<DescribeInstancesResponse", _EC2_NS, b">"]
        parts.append(f"<requestId>{call.request_id}</requestId><reservationSet>".encode())
        for r in range(start, stop):
            rid = (r * 0x9E3779B97F4A7C1 + salt) % 16**15
            parts.append(
                b"<item><reservationId>r-%015x%02x</reservationId><ownerId>%s</ownerId>"
                b"<groupSet/><instancesSet>" % (rid, r_index, _ACCOUNT.encode())
            )
            for k in range(r * per_res, min((r + 1) * per_res, count)):
                iid = b"i-%015x%02x" % ((k * 0xBF58476D1CE4E5B + salt) % 16**15, r_index)
                ip = b"10.%d.%d.%d" % ((k >> 16) & 255, (k >> 8) & 255, k & 255)
                dns = ip.replace(b".", b"-")
                tag = b"node-%d" % k
                parts.append(variants[(k * 37 + salt) & 63] % (iid, dns, k - r * per_res, ip, tag))
            parts.append(b"</instancesSet></item>")
        parts.append(b"</reservationSet>")
        next_token = None
        if call.repeat_token and token:
            next_token = token
        elif stop < reservations:
            next_token = encode_token(stop, scope)
        if next_token is not None:
            parts.append(f"<nextToken>{next_token}</nextToken>".encode())
        parts.append(b"</DescribeInstancesResponse>")
        return Reply(200, b"".join(parts), b"text/xml;charset=UTF-8")


# -- IAM ---------------------------------------------------------------------

_IAM_NS = ' xmlns="https://iam.amazonaws.com/doc/2010-05-08/"'


def iam_error(status: int, code: str, message: str, request_id: str) -> Reply:
    """IAM's error document: ``<ErrorResponse><Error><Type>Sender</Type>..``."""
    kind = "Receiver" if status >= 500 else "Sender"
    body = (
        f"<ErrorResponse{_IAM_NS}><Error><Type>{kind}</Type><Code>{code}</Code>"
        f"<Message>{xml_escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return Reply(status, body.encode(), b"text/xml")


class IamService:
    """ListUsers for a generated set of users."""

    name = "iam"

    def __init__(self, users: IamUsers | None, cache: PageCache) -> None:
        self.users = users or IamUsers()
        self.cache = cache
        self.width = max(6, len(str(max(self.users.count - 1, 0))))
        rng = random.Random(f"iam:{self.users.seed}")
        self.salt = rng.getrandbits(64)
        self.dates = [iso_s(1_500_000_000 + rng.uniform(0, 2.5e8)) for _ in range(256)]

    def parse(self, request: Request, region: str) -> Call:
        params = form_params(request)
        operation = params.get("Action") or "Unsupported"
        return Call(self.name, operation, region, request, params, bool(params.get("Marker")))

    def handle(self, call: Call) -> Reply:
        handlers: dict[str, Callable[[Call], Reply]] = {"ListUsers": self._list_users}
        handler = handlers.get(call.operation)
        if handler is None:
            return iam_error(
                400,
                "InvalidAction",
                f"Could not find operation {call.operation} for version 2010-05-08",
                call.request_id,
            )
        try:
            return handler(call)
        except _QueryError as exc:
            return iam_error(exc.status, exc.code, exc.message, call.request_id)

    def throttle_reply(self, call: Call, code: str) -> Reply:
        return iam_error(400, "Throttling", "Rate exceeded", call.request_id)

    def internal_error(self, call: Call) -> Reply:
        return iam_error(
            500,
            "ServiceFailure",
            "The request processing has failed because of an unknown error.",
            call.request_id,
        )

    def _list_users(self, call: Call) -> Reply:
        params: dict[str, str] = call.params
        users = self.users
        count = users.count if users.path.startswith(params.get("PathPrefix", "/")) else 0
        try:
            max_items = int(params.get("MaxItems", "100"))
        except ValueError:
            max_items = 0
        if not 1 <= max_items <= 1000:
            raise _QueryError(
                400,
                "ValidationError",
                f"1 validation error detected: Value '{params.get('MaxItems')}' at 'maxItems' "
                "failed to satisfy constraint: Member must have value less than or equal to 1000",
            )
        start = 0
        marker = params.get("Marker")
        if marker:
            try:
                start = decode_token(marker, "iam:users")
            except InvalidToken:
                raise _QueryError(400, "ValidationError", "Invalid Marker") from None
        stop = min(count, start + max_items)
        path = xml_escape(users.path)
        parts = [f"<ListUsersResponse{_IAM_NS}><ListUsersResult><Users>".encode()]
        for i in range(start, stop):
            name = f"user{i:0{self.width}d}"
            uid = (i * 0x9E3779B97F4A7C15 + self.salt) % 16**17
            parts.append(
                f"<member><Path>{path}</Path><UserName>{name}</UserName>"
                f"<UserId>AIDA{uid:017X}</UserId>"
                f"<Arn>arn:aws:iam::{_ACCOUNT}:user{path}{name}</Arn>"
                f"<CreateDate>{self.dates[(i * 131 + self.salt) & 255]}</CreateDate>"
                "</member>".encode()
            )
        parts.append(b"</Users>")
        next_marker = None
        if call.repeat_token and marker:
            next_marker = marker
        elif stop < count:
            next_marker = encode_token(stop, "iam:users")
        if next_marker is not None:
            parts.append(f"<IsTruncated>true</IsTruncated><Marker>{next_marker}</Marker>".encode())
        else:
            parts.append(b"<IsTruncated>false</IsTruncated>")
        parts.append(
            f"</ListUsersResult><ResponseMetadata><RequestId>{call.request_id}</RequestId>"
            "</ResponseMetadata></ListUsersResponse>".encode()
        )
        return Reply(200, b"".join(parts), b"text/xml")
