package jwtrotor

import (
	"fmt"
	"strings"
)

// hostileAzureCases are the values an azure_blob publisher must refuse,
// on a new one and on publishers/az, which each case's setup writes: a
// missing account_url or container, outbound URLs as for every store, a
// SAS URL pasted into account_url, container and account names Azure does
// not allow, credentials that cannot be what was issued or that do not go
// together, fields of the other types, and no credentials at all, which
// azure_blob refuses even where ambient credentials are allowed.
func hostileAzureCases(big string) []hostileCase {
	var cs []hostileCase
	add := func(c ...hostileCase) { cs = append(cs, c...) }
	withAz := func(e *testEnv) { e.mustWrite("publishers/az", azurePublisher(nil)) }
	az := func(name string, data map[string]any, field string, also ...string) hostileCase {
		return hostileCase{name: "publishers azure_blob " + name, path: "publishers/az", data: data, field: field, also: also, setup: withAz}
	}
	add(
		hostileCase{name: "publishers new azure_blob without account_url", path: "publishers/new", data: azurePublisher(map[string]any{"account_url": ""}), field: "account_url", also: []string{"required"}},
		hostileCase{name: "publishers new azure_blob without container", path: "publishers/new", data: azurePublisher(map[string]any{"container": ""}), field: "container", also: []string{"required"}},
		hostileCase{name: "publishers new azure_blob without credentials, ambient allowed", path: "publishers/new",
			data:  map[string]any{"type": "azure_blob", "account_url": "https://a.blob.core.windows.net", "container": "oidc"},
			field: "sas_token", also: []string{"not supported"},
			setup: func(e *testEnv) { e.mustWrite("config", map[string]any{"publishers_allow_ambient_credentials": true}) }},
		az("credentials cleared", map[string]any{"account_name": "", "account_key": ""}, "sas_token", "not supported"),
		az("SAS URL as account_url", map[string]any{"account_url": "https://a.blob.core.windows.net/?sv=1&sig=s"}, "account_url", "not repeated"),
		az("account_key without account_name", map[string]any{"account_name": ""}, "account_name", "go together"),
		az("account_name without account_key", map[string]any{"account_key": ""}, "account_key", "go together"),
		az("account_key and sas_token", map[string]any{"sas_token": "sv=1&sig=s"}, "sas_token", "either"),
		az("account_key not base64", map[string]any{"account_key": "not-base64!"}, "account_key", "base64"),
		az("account_key too long", map[string]any{"account_key": strings.Repeat("A", maxAccountKeyLen+4)}, "account_key"),
		az("sas_token without sig", map[string]any{"account_name": "", "account_key": "", "sas_token": "sv=1&sp=rcw"}, "sas_token", "not a SAS token"),
		az("sas_token with a space", map[string]any{"account_name": "", "account_key": "", "sas_token": "sv=1 &sig=s"}, "sas_token"),
		az("sas_token too long", map[string]any{"account_name": "", "account_key": "", "sas_token": "sig=" + strings.Repeat("s", maxSASTokenLen)}, "sas_token"),
	)
	for _, c := range []string{"ab", "Oidc", "a--b", "-abc", "abc-", "a_b", "a/b", "$logs", strings.Repeat("c", 64), big} {
		add(az(fmt.Sprintf("container %.16q", c), map[string]any{"container": c}, "container"))
	}
	for _, n := range []string{"ab", "Acct", "my-acct", strings.Repeat("n", 25), big} {
		add(az(fmt.Sprintf("account_name %.16q", n), map[string]any{"account_name": n}, "account_name"))
	}
	for _, u := range []string{"http://a.blob.core.windows.net", "https://169.254.169.254", "https://user:pw@a.blob.core.windows.net", "ftp://a.blob.core.windows.net", "https://" + big} {
		add(az(fmt.Sprintf("account_url %.40q", u), map[string]any{"account_url": u}, "account_url"))
	}
	// Fields of the other types, and azure_blob's on the other types.
	for _, f := range []string{"bucket", "url", "password", "secret_access_key"} {
		add(az("given "+f, map[string]any{f: "x"}, f, "publishers only"))
	}
	for _, f := range []string{"account_url", "container", "account_name", "account_key", "sas_token"} {
		add(hostileCase{name: "publishers s3 given " + f, path: "publishers/p", data: map[string]any{f: "x"}, field: f, also: []string{"type=azure_blob publishers only"}})
	}
	return cs
}
