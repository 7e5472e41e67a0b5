package jwtrotor

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// Credentials of the azure_blob publishers these tests write: distinctive,
// so a scan for them finds any copy. The key is base64, as a storage
// account key is.
const (
	testAzureKey = "YXp1cmUta2V5LW5ldmVyLXNob3duLTdkM2EtMDEyMzQ1Njc4OQ=="
	testAzureSig = "azure-sas-sig-never-shown-4c1b"
	testAzureSAS = "sv=2021-12-02&sr=c&sp=rcw&se=2030-01-01T00%3A00%3A00Z&sig=" + testAzureSig
)

func azurePublisher(extra map[string]any) map[string]any {
	d := map[string]any{
		"type": "azure_blob", "account_url": "https://issuerkeys.blob.core.windows.net", "container": "oidc",
		"account_name": "issuerkeys", "account_key": testAzureKey,
	}
	maps.Copy(d, extra)
	return d
}

// An azure_blob publisher's fields follow Azure's rules and the outbound
// rules of every store; a refusal names its field and never quotes
// account_key or sas_token.
func TestCheckAzure(t *testing.T) {
	t.Parallel()
	base := func() publisherEntry {
		return publisherEntry{Type: publisherAzure, AccountURL: "https://acct.blob.core.windows.net", Container: "oidc",
			AccountName: "acct", AccountKey: testAzureKey, JWKSPath: defaultJWKSObject}
	}
	for name, change := range map[string]func(p *publisherEntry){
		"shared key":              func(*publisherEntry) {},
		"account_url with slash":  func(p *publisherEntry) { p.AccountURL += "/" },
		"Azurite on loopback":     func(p *publisherEntry) { p.AccountURL = "http://127.0.0.1:10000/devstoreaccount1" },
		"$web container":          func(p *publisherEntry) { p.Container = "$web" },
		"63-character container":  func(p *publisherEntry) { p.Container = strings.Repeat("a", 63) },
		"SAS token":               func(p *publisherEntry) { p.AccountName, p.AccountKey, p.SASToken = "", "", testAzureSAS },
		"SAS token with its ?":    func(p *publisherEntry) { p.AccountName, p.AccountKey, p.SASToken = "", "", "?"+testAzureSAS },
		"SAS token, sig first":    func(p *publisherEntry) { p.AccountName, p.AccountKey, p.SASToken = "", "", "sig=x&sv=2021-12-02" },
		"account name, 24 digits": func(p *publisherEntry) { p.AccountName = strings.Repeat("7", 24) },
	} {
		p := base()
		change(&p)
		if err := checkPublisher(&p, nil, false); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
	for name, c := range map[string]struct {
		change func(p *publisherEntry)
		want   string
	}{
		"no account_url":         {func(p *publisherEntry) { p.AccountURL = "" }, "account_url: required"},
		"http off loopback":      {func(p *publisherEntry) { p.AccountURL = "http://acct.blob.core.windows.net" }, "account_url: "},
		"query in account_url":   {func(p *publisherEntry) { p.AccountURL += "/?" + testAzureSAS }, "account_url: "},
		"link-local account_url": {func(p *publisherEntry) { p.AccountURL = "https://169.254.169.254" }, "account_url: "},
		"user info":              {func(p *publisherEntry) { p.AccountURL = "https://acct:" + testAzureKey + "@acct.blob.core.windows.net" }, "account_url: "},
		"no container":           {func(p *publisherEntry) { p.Container = "" }, "container: required"},
		"short container":        {func(p *publisherEntry) { p.Container = "ab" }, "container: "},
		"long container":         {func(p *publisherEntry) { p.Container = strings.Repeat("a", 64) }, "container: "},
		"upper-case container":   {func(p *publisherEntry) { p.Container = "Oidc" }, "container: "},
		"double hyphen":          {func(p *publisherEntry) { p.Container = "a--b" }, "container: "},
		"leading hyphen":         {func(p *publisherEntry) { p.Container = "-abc" }, "container: "},
		"trailing hyphen":        {func(p *publisherEntry) { p.Container = "abc-" }, "container: "},
		"other $ container":      {func(p *publisherEntry) { p.Container = "$logs" }, "container: "},
		"slash in container":     {func(p *publisherEntry) { p.Container = "a/b" }, "container: "},
		"short account name":     {func(p *publisherEntry) { p.AccountName = "ab" }, "account_name: "},
		"account name hyphen":    {func(p *publisherEntry) { p.AccountName = "my-acct" }, "account_name: "},
		"account name upper":     {func(p *publisherEntry) { p.AccountName = "Acct" }, "account_name: "},
		"key without name":       {func(p *publisherEntry) { p.AccountName = "" }, "account_name: "},
		"name without key":       {func(p *publisherEntry) { p.AccountKey = "" }, "account_key: "},
		"key not base64":         {func(p *publisherEntry) { p.AccountKey = testAzureKey + "!" }, "account_key: is not base64"},
		"key with a space":       {func(p *publisherEntry) { p.AccountKey = testAzureKey + " x" }, "account_key: "},
		"key too long":           {func(p *publisherEntry) { p.AccountKey = testAzureKey + strings.Repeat("A", 300) }, "account_key: "},
		"key and SAS":            {func(p *publisherEntry) { p.SASToken = testAzureSAS }, "sas_token: give either"},
		"SAS without sig": {func(p *publisherEntry) {
			p.AccountName, p.AccountKey, p.SASToken = "", "", "sv=2021-12-02&sp=rcw&xsig="+testAzureSig
		}, "sas_token: is not a SAS token"},
		"SAS with fragment":  {func(p *publisherEntry) { p.AccountName, p.AccountKey, p.SASToken = "", "", testAzureSAS+"#f" }, "sas_token: is not a SAS token"},
		"SAS with a newline": {func(p *publisherEntry) { p.AccountName, p.AccountKey, p.SASToken = "", "", testAzureSAS+"\n" }, "sas_token: "},
		"no credentials":     {func(p *publisherEntry) { p.AccountName, p.AccountKey = "", "" }, "not supported"},
	} {
		p := base()
		c.change(&p)
		// Ambient credentials allowed, so that the refusal is the type's.
		err := checkPublisher(&p, nil, true)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a refusal containing %q", name, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), testAzureKey) || strings.Contains(err.Error(), testAzureSig) {
			t.Errorf("%s: the refusal quotes a credential: %v", name, err)
		}
	}
}

// An azure_blob publisher reads back without its credentials (each
// reported as set or not) and without the other types' fields; an update
// that gives a credential replaces it, and "" clears it; no response,
// refusal or log line carries one. Without credentials it is refused even
// where config allows ambient credentials, with a 400 that says so.
func TestPublisherAzureCredentialsNeverLeave(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("publishers/az", azurePublisher(map[string]any{"prefix": "issuer/", "public_url": "https://issuerkeys.blob.core.windows.net/oidc/issuer/"}))
	var seen []string
	record := func(resp *logical.Response, err error) {
		b, _ := json.Marshal(resp)
		seen = append(seen, string(b), fmt.Sprint(err))
	}
	resp, err := e.do(logical.ReadOperation, "publishers/az", nil)
	record(resp, err)
	want := map[string]any{
		"type": "azure_blob", "account_url": "https://issuerkeys.blob.core.windows.net", "container": "oidc", "account_name": "issuerkeys",
		"account_key_set": true, "sas_token_set": false, "ambient_credentials": false,
		"prefix": "issuer/", "jwks_path": ".well-known/jwks.json", "ring": "", "public_url": "https://issuerkeys.blob.core.windows.net/oidc/issuer/", "required": false, "profile": "generic",
	}
	if got := resp.Data; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("publishers/az reads\n%v\nwant\n%v", got, want)
	}
	for _, data := range []map[string]any{
		{"account_key": testAzureKey + "%"},
		{"sas_token": testAzureSAS},
		{"account_key": "", "sas_token": "sv=1&xsig=" + testAzureSig},
		{"account_url": "https://issuerkeys.blob.core.windows.net/?" + testAzureSAS},
		{"bucket": "issuer-keys"},
		{"password": "p"},
	} {
		resp, err := e.write("publishers/az", data)
		expect400(t, resp, err)
		record(resp, err)
	}
	e.mustWrite("config", map[string]any{"publishers_allow_ambient_credentials": true})
	resp, err = e.write("publishers/az", map[string]any{"account_name": "", "account_key": ""})
	expect400(t, resp, err, "sas_token:", "not supported")
	record(resp, err)
	resp, err = e.write("publishers/none", map[string]any{"type": "azure_blob", "account_url": "https://a.blob.core.windows.net", "container": "oidc"})
	expect400(t, resp, err, "sas_token:", "not supported")

	stored := strings.Join(slices.Collect(maps.Values(dump(t, e.storage))), "\n")
	if !strings.Contains(stored, testAzureKey) {
		t.Fatal("the account key is not stored")
	}
	// Shared key replaced by a SAS token: the key is gone from storage.
	e.mustWrite("publishers/az", map[string]any{"account_name": "", "account_key": "", "sas_token": testAzureSAS})
	resp, err = e.do(logical.ReadOperation, "publishers/az", nil)
	record(resp, err)
	if got := resp.Data; got["account_key_set"] != false || got["sas_token_set"] != true || got["account_name"] != "" {
		t.Fatalf("after switching to a SAS token: %v", got)
	}
	stored = strings.Join(slices.Collect(maps.Values(dump(t, e.storage))), "\n")
	if strings.Contains(stored, testAzureKey) || !strings.Contains(stored, testAzureSig) {
		t.Fatal("the replaced account key is still stored, or the SAS token is not")
	}
	e.mustWrite("publishers/az", map[string]any{"sas_token": "?sv=2021-12-02&sig=rotated"})
	if stored = strings.Join(slices.Collect(maps.Values(dump(t, e.storage))), "\n"); strings.Contains(stored, testAzureSig) {
		t.Fatal("the replaced SAS token is still stored")
	}
	scan := strings.Join(seen, "\n") + "\n" + e.logs.String()
	for _, c := range []string{testAzureKey, testAzureSig} {
		if strings.Contains(scan, c) {
			t.Errorf("credential %q appears in a response, refusal or log line", c)
		}
	}
	if !strings.Contains(scan, `"account_key_set":true`) || !strings.Contains(e.logs.String(), `"publisher":"az"`) {
		t.Fatalf("the scan saw no publisher read or log line:\n%.2000s", scan)
	}
}
