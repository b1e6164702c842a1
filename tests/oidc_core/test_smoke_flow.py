import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlsplit


def test_code_flow_smoke(app, client):
    from idp.services.clients import ClientSpec, create_client
    from idp.services.users import create_user

    c, key = create_client(
        ClientSpec(
            name="web",
            redirect_uris=["https://app.example.com/cb"],
            grant_types=["authorization_code", "refresh_token"],
            scope="openid profile email offline_access",
        )
    )
    create_user("alice", "pw-alice-1", "alice@example.com", "Alice")
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    q = {
        "client_id": c.id,
        "redirect_uri": "https://app.example.com/cb",
        "response_type": "code",
        "scope": "openid profile email",
        "state": "s1",
        "nonce": "n1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    r = client.get("/authorize", query_string=q)
    assert r.status_code == 302 and r.location.startswith("/login?"), (r.status_code, r.location)
    r = client.get(r.location)
    assert r.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    rt = re.search(r'name="return_to" value="([^"]+)"', r.text).group(1).replace("&amp;", "&")
    r = client.post("/login", data={"csrf_token": csrf, "return_to": rt, "username": "alice", "password": "pw-alice-1"})
    assert r.status_code == 303, r.text
    r = client.get(r.location)
    assert r.status_code == 302 and r.location.startswith("/consent?"), r.location
    r = client.get(r.location)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    rt = re.search(r'name="return_to" value="([^"]+)"', r.text).group(1).replace("&amp;", "&")
    r = client.post("/consent", data={"csrf_token": csrf, "return_to": rt, "decision": "allow"})
    assert r.status_code == 303, r.text
    r = client.get(r.location)
    assert r.status_code == 302 and r.location.startswith("https://app.example.com/cb?"), r.location
    got = parse_qs(urlsplit(r.location).query)
    assert got["state"] == ["s1"] and got["iss"] == ["http://127.0.0.1:5000"]
    basic = base64.b64encode(f"{c.id}:{key.key}".encode()).decode()
    r = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": got["code"][0],
            "redirect_uri": "https://app.example.com/cb",
            "code_verifier": verifier,
        },
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200, r.json
    assert {"access_token", "id_token", "refresh_token"} <= set(r.json)
    at = r.json["access_token"]
    r2 = client.get("/userinfo", headers={"Authorization": f"Bearer {at}"})
    assert r2.status_code == 200 and r2.json["email"] == "alice@example.com", r2.json
    r3 = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": r.json["refresh_token"]},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r3.status_code == 200, r3.json
    r4 = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": r.json["refresh_token"]},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r4.status_code == 400 and r4.json["error"] == "invalid_grant"
    r5 = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": r3.json["refresh_token"]},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r5.status_code == 400, r5.json
