import base64


def test_cc_smoke(app, client):
    from idp.services.clients import ClientSpec, create_client

    c, key = create_client(ClientSpec(name="svc", audiences=["https://api.example.com"], scope="read write"))
    basic = base64.b64encode(f"{c.id}:{key.key}".encode()).decode()
    r = client.post("/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200, r.json
    assert r.headers["Cache-Control"] == "no-store"
    tok = r.json["access_token"]
    r = client.post("/introspect", data={"token": tok}, headers={"Authorization": f"Basic {basic}"})
    assert r.json["active"] is True, r.json
    r = client.post("/revoke", data={"token": tok}, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200
    r = client.post("/introspect", data={"token": tok}, headers={"Authorization": f"Basic {basic}"})
    assert r.json == {"active": False}
