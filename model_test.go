package jwtrotor

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"pgregory.net/rapid"
)

// The model-based test: random sequences of every operation the plugin
// takes (configuration, rings, roles, signing and minting by a read of
// token/<role>, rotations, revocations, rollbacks, maintenance, time passing
// and the clock stepping either way, restarts, crashes between storage
// writes, and a standby that learns of changes only through Invalidate),
// checked after every step against the invariants in docs/invariants.md and
// a ledger of every token issued.
// rapid shrinks a failing sequence and writes it to testdata/rapid/; those
// files replay on every run, and TestModelRegressions replays them all.
//
// go test -run TestModel -model.budget=2m runs it for two minutes (make
// test); make soak SOAK=30m for longer.

var (
	modelBudget  = flag.Duration("model.budget", 3*time.Second, "how long TestModel generates sequences")
	modelWorkers = flag.Int("model.workers", 2, "sequences generated in parallel by TestModel")
)

// modelSteps is the average sequence length: longer than rapid's default,
// to reach storms of operations. A kept sequence replays only with the
// length it was found with.
const modelSteps = "100"

// setFlag sets a rapid flag for the test, unless the command line did.
func setFlag(t *testing.T, name, value string) {
	f := flag.Lookup(name)
	if f.Value.String() != f.DefValue {
		return
	}
	flag.Set(name, value)
	t.Cleanup(func() { flag.Set(name, f.DefValue) })
}

// TestModel draws random operation sequences for -model.budget (make
// testmodel, make soak) and checks every invariant of docs/invariants.md
// after every step; a run that drew no sequence fails.
func TestModel(t *testing.T) {
	setFlag(t, "rapid.steps", modelSteps)
	deadline := time.Now().Add(*modelBudget)
	var seqs, steps atomic.Int64
	start := time.Now()
	t.Run("workers", func(t *testing.T) {
		for w := 0; w < *modelWorkers; w++ {
			t.Run(fmt.Sprintf("w%d", w), func(t *testing.T) {
				t.Parallel()
				for time.Now().Before(deadline) && !t.Failed() {
					rapid.Check(t, func(rt *rapid.T) {
						m := newModel(rt)
						rt.Repeat(m.actions())
						seqs.Add(1)
						steps.Add(int64(m.steps))
					})
				}
			})
		}
	})
	elapsed := time.Since(start)
	t.Logf("model: %d sequences, %d steps in %s (%.0f µs a step)", seqs.Load(), steps.Load(), elapsed.Round(time.Second),
		float64(elapsed.Microseconds())*float64(*modelWorkers)/float64(max(steps.Load(), 1)))
	s := &modelAdoptStats
	t.Logf("model: imports drawn %d (accepted %d), trusts drawn %d (accepted %d), tokens signed by imported keys %d",
		s.imports.Load(), s.importsOK.Load(), s.trusts.Load(), s.trustsOK.Load(), s.importedTokens.Load())
	ts := &modelTokenStats
	t.Logf("model: token/<role> reads drawn %d (minted %d), allow_token_read turned on %d times",
		ts.reads.Load(), ts.minted.Load(), ts.optIns.Load())
	rs := &modelReachStats
	t.Logf("model: rings at the tombstone cap %d (a key revoked there %d), forced rotations in storms %d (refused for a bound %d), most keys a ring served %d of %d, steps to a key timestamp ±1 s %d, signs that must succeed %d (%d while held)",
		rs.tombstoneCap.Load(), rs.revokeAtCap.Load(), rs.forced.Load(), rs.forcedBounded.Load(), rs.keyPeak.Load(), maxRingKeys, rs.atTimestamp.Load(), rs.mustSign.Load(), rs.mustSignHeld.Load())
	ors := &modelOracleStats
	t.Logf("model: rollbacks accepted %d (the docs say must %d), must be refused %d, sent at a window's last second or end %d; most trusted keys in a ring %d of %d (a trust sent at the cap %d); stock checked after maintenance %d times; forward steps of at most 60 s adding up past it %d; active keys revoked after a restart storm %d",
		ors.rollbackOK.Load(), ors.rollbackMust.Load(), ors.rollbackRefused.Load(), ors.rollbackEdge.Load(), ors.trustPeak.Load(), maxTrustedKeys, ors.trustCap.Load(), ors.stockChecks.Load(), ors.creeps.Load(), ors.restarts.Load())
	t.Logf("model: publishers:%s", modelPubStats)
	if seqs.Load() == 0 {
		t.Fatal("the model ran no sequence")
	}
}

// TestModelRegressions replays every failing sequence the model test ever
// kept: testdata/rapid/regressions/<set>/ holds one per defect it found,
// each named after it, drawn with the actions of <set> (a new failure lands
// under testdata/rapid/TestModel_*/, and replays there too until it is
// moved to the newest set).
func TestModelRegressions(t *testing.T) {
	var files []string
	for _, pattern := range []string{"*", filepath.Join("regressions", "*")} {
		found, err := filepath.Glob(filepath.Join("testdata", "rapid", pattern, "*.fail"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, found...)
	}
	if len(files) == 0 {
		t.Fatal("no kept sequence found")
	}
	for _, f := range files {
		set := actionSets[len(actionSets)-1]
		if dir := filepath.Dir(f); filepath.Base(filepath.Dir(dir)) == "regressions" {
			set = filepath.Base(dir)
		}
		t.Run(set+"/"+filepath.Base(f), func(t *testing.T) {
			setFlag(t, "rapid.steps", modelSteps)
			setFlag(t, "rapid.failfile", f)
			setFlag(t, "rapid.checks", "1")
			rapid.Check(t, func(rt *rapid.T) {
				m := newModel(rt)
				rt.Repeat(m.actionsOf(t, set))
			})
		})
	}
}

// actionSets name the model's action sets, oldest first. rapid draws an
// action by its place among the names, so a new action changes what a kept
// sequence replays: each action added after the first set names the set it
// came in (actionAddedIn), and a kept sequence replays with the actions of
// its set.
var actionSets = []string{"base", "adopt", "token", "reach", "oracle", "restart", "publish", "profile", "snapshot"}

var actionAddedIn = map[string]string{
	"Import":        "adopt",
	"Trust":         "adopt",
	"Token":         "token",
	"Token2":        "token",
	"RoleTokenRead": "token",
	"RevokeStorm":   "reach",
	"ForceStorm":    "reach",
	"AtTimestamp":   "reach",
	"AtTimestamp2":  "reach",
	"RollbackEdge":  "oracle",
	"RollbackEdge2": "oracle",
	"TrustStorm":    "oracle",
	"ClockCreep":    "oracle",
	"RestartStorm":  "restart",
	"PubWrite":      "publish",
	"PubWrite2":     "publish",
	"PubDelete":     "publish",
	"StoreFault":    "publish",
	"StoreFault2":   "publish",
	"Pass":          "publish",
	"Tick":          "publish",
	"Tick2":         "publish",
	"PassNear":      "publish",
	"PassNear2":     "publish",
	"PubCrash":      "publish",
	"MaxDelay":      "publish",
	"PubProfile":    "profile",
	"PubProfile2":   "profile",
	"Snapshot":      "snapshot",
}

// actionsOf is the model's actions as they were in the set named.
func (m *model) actionsOf(t *testing.T, set string) map[string]func(*rapid.T) {
	at := slices.Index(actionSets, set)
	if at < 0 {
		t.Fatalf("testdata/rapid/regressions/%s: no such action set (actionSets)", set)
	}
	all := m.actions()
	for name := range all {
		if added, ok := actionAddedIn[name]; ok && slices.Index(actionSets, added) > at {
			delete(all, name)
		}
	}
	return all
}

// Names the model draws from: few, so that operations meet.
var (
	modelRings = []string{"a", "b", "c"}
	modelRoles = []string{"r1", "r2"}
	modelIDs   = []string{"alpha", "bravo"}
)

const modelIssuer = "https://vault.example.com/v1/jwt"

// modelStorage is in-memory storage that can crash (fail every write from
// the n-th on) and records the keys written, for the standby's invalidations.
type modelStorage struct {
	logical.InmemStorage
	mu      sync.Mutex
	writes  int
	failAt  int
	written []string
	// failNext, when set, says whether to fail a write of key; the first
	// write it fails clears it: a crash just before that write.
	failNext func(key string) bool
}

func (s *modelStorage) write(key string, do func() error) error {
	s.mu.Lock()
	s.writes++
	fail := s.failAt > 0 && s.writes >= s.failAt
	if s.failNext != nil && s.failNext(key) {
		fail, s.failNext = true, nil
	}
	s.mu.Unlock()
	if fail {
		return errInjected
	}
	if err := do(); err != nil {
		return err
	}
	s.mu.Lock()
	s.written = append(s.written, key)
	s.mu.Unlock()
	return nil
}

func (s *modelStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	return s.write(e.Key, func() error { return s.InmemStorage.Put(ctx, e) })
}

func (s *modelStorage) Delete(ctx context.Context, k string) error {
	return s.write(k, func() error { return s.InmemStorage.Delete(ctx, k) })
}

func (s *modelStorage) drain() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.written
	s.written = nil
	return out
}

// modelNode is one Vault node's plugin process.
type modelNode struct {
	name string
	b    *backend
	logs *bytes.Buffer
	last int64 // the latest schedule time checked
}

type modelToken struct {
	ring, kid string
	jwk       []byte
	signedAt  int64 // schedule time at signing
	iat, exp  int64
	exempt    bool // its key was revoked or its ring dropped: it may stop verifying
	// ahead: signed by the standby while its schedule ran ahead of the
	// active node's (one node held a clock step, the other did not). The
	// active node may then retire the key at its own, earlier, time.
	ahead bool
	// rewound is how far a restart moved the schedule back before the
	// time this token was signed at: the new process resumed from a
	// persisted high-water mark, the clock having stepped back before the
	// old process stored how far it had gone. The new process may retire
	// and remove the token's key that much earlier (docs/invariants.md,
	// time), and no more.
	rewound int64
}

type model struct {
	t      *rapid.T
	s      *modelStorage
	clock  *fakeClock
	keys   keySource
	a, b   *modelNode
	steps  int
	tokens []*modelToken
	gone   map[string]bool  // kids revoked or forgotten: never served again
	adopt  *modelAdopt      // departed keys in order, and public keys seen
	active map[string]int64 // when each ring was first seen with an active key
	prev   map[string]*ringEntry
	jump   time.Duration // a forward step not yet corrected
	// allowance is how far ahead of real time the schedule may be: the
	// largest forward step any node accepted (clock/accept, or a restart,
	// which cannot tell a step from an outage), carried to every node by
	// the high-water marks in storage.
	allowance int64
	faulted   bool // a storage fault was injected in this step
	// opNow is the active node's schedule time at this step's last
	// request (0: none): the time its writes were made at, even if the
	// node restarted after.
	opNow int64
	etags []string
	jtis  map[string]bool // every jti issued
	// rolledBack: the keys that took part in a rollback (rollbackKey).
	rolledBack map[string]bool
	// ringTouched: per ring, the latest schedule time of a request that
	// may have changed its settings or revoked one of its keys.
	ringTouched map[string]int64
	// maxSchedule: the latest schedule time the active node acted at.
	maxSchedule int64
	stormNext   int // the next key of the trust storms' pool
	// pub: the publishers, their stores and what the publish checks
	// remember (model_publish_test.go); nil until a publish action.
	pub *modelPub
}

func newModel(t *rapid.T) *model {
	m := &model{
		t: t, s: &modelStorage{}, clock: &fakeClock{now: testStart}, keys: sharedKeys.source(),
		gone: map[string]bool{}, active: map[string]int64{}, prev: map[string]*ringEntry{},
		adopt: newModelAdopt(), jtis: map[string]bool{},
		rolledBack: map[string]bool{}, ringTouched: map[string]int64{},
	}
	m.a = m.start("active")
	m.b = m.start("standby")
	return m
}

// start makes a node's plugin process over the shared storage.
func (m *model) start(name string) *modelNode {
	logs := &bytes.Buffer{}
	conf := logical.TestBackendConfig()
	conf.StorageView = m.s
	conf.System = &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour,
		EntityVal: &logical.Entity{ID: "entity-1234", Name: "model-workload"}}
	conf.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})
	b := newBackend(m.clock)
	b.keys = m.keys
	b.wrapKeys = testWrapKeys
	if err := b.Setup(context.Background(), conf); err != nil {
		m.t.Fatal(err)
	}
	b.logger = conf.Logger
	m.wirePublish(b)
	return &modelNode{name: name, b: b, logs: logs}
}

// actions are drawn uniformly by name; the operations sequences need most
// (signing, rotations, settings changes, time passing) appear twice.
func (m *model) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"Sign2":         m.sign,
		"Rotate2":       m.rotate,
		"RingWrite2":    m.ringWrite,
		"RoleWrite2":    m.roleWrite,
		"Advance2":      m.advance,
		"Maintain2":     m.maintain,
		"RingTweak":     m.ringTweak,
		"RingTweak2":    m.ringTweak,
		"RoleTweak":     m.roleTweak,
		"RoleTweak2":    m.roleTweak,
		"Config":        m.config,
		"RingWrite":     m.ringWrite,
		"RingDelete":    m.ringDelete,
		"RoleWrite":     m.roleWrite,
		"RoleDelete":    m.roleDelete,
		"Sign":          m.sign,
		"SignBatch":     m.signBatch,
		"Rotate":        m.rotate,
		"Revoke":        m.revoke,
		"Rollback":      m.rollback,
		"Maintain":      m.maintain,
		"Advance":       m.advance,
		"AdvanceLong":   m.advanceLong,
		"ClockBack":     m.clockBack,
		"ClockJump":     m.clockJump,
		"ClockCorrect":  m.clockCorrect,
		"ClockAccept":   m.clockAccept,
		"Restart":       m.restart,
		"Crash":         m.crash,
		"Fetch":         m.fetch,
		"SignOnStandby": m.signOnStandby,
		"Import":        m.importKey,
		"Trust":         m.trustKey,
		"Token":         m.tokenRead,
		"Token2":        m.tokenRead,
		"RoleTokenRead": m.roleTokenRead,
		"RevokeStorm":   m.revokeStorm,
		"ForceStorm":    m.forceStorm,
		"AtTimestamp":   m.atTimestamp,
		"AtTimestamp2":  m.atTimestamp,
		"RollbackEdge":  m.rollbackWindow,
		"RollbackEdge2": m.rollbackWindow,
		"TrustStorm":    m.trustStorm,
		"ClockCreep":    m.clockCreep,
		"RestartStorm":  m.restartStorm,
		"PubWrite":      m.pubWrite,
		"PubWrite2":     m.pubWrite,
		"PubDelete":     m.pubDelete,
		"StoreFault":    m.storeFault,
		"StoreFault2":   m.storeFault,
		"Pass":          m.publishPassAction,
		"Tick":          m.tick,
		"Tick2":         m.tick,
		"PassNear":      m.passNear,
		"PassNear2":     m.passNear,
		"PubCrash":      m.pubCrash,
		"MaxDelay":      m.maxDelay,
		"PubProfile":    m.pubProfile,
		"PubProfile2":   m.pubProfile,
		"Snapshot":      m.snapshotRead,
		"":              m.check,
	}
}

// outcome of one request.
type outcome int

const (
	ok2xx outcome = iota
	bad4xx
	err5xx
)

// do sends one request to node n, the way Vault routes it, and checks
// that a refused request changed nothing and that only an injected fault
// answers 5xx.
func (m *model) do(n *modelNode, op logical.Operation, path string, data map[string]any) (*logical.Response, outcome) {
	m.t.Helper()
	before := m.dump()
	req := &logical.Request{
		Operation: op, Path: path, Data: data, Storage: m.s, MountPoint: "jwt/", EntityID: "entity-1234",
		Connection: &logical.Connection{RemoteAddr: "192.0.2.10:5000"},
	}
	ctx := context.Background()
	if op == logical.UpdateOperation {
		found, exists, err := n.b.HandleExistenceCheck(ctx, req)
		if err != nil {
			m.fault5xx(path, err)
			return nil, err5xx
		}
		if found && !exists {
			req.Operation = logical.CreateOperation
		}
	}
	touch := m.touching(path, req.Operation, data)
	resp, err := n.b.HandleRequest(ctx, req)
	m.checkNoSecrets(path, resp)
	m.checkNoCredentials(path, resp, err)
	if n == m.a {
		m.opNow = n.b.clock.read().Schedule
		m.maxSchedule = max(m.maxSchedule, m.opNow)
	}
	switch {
	case err == nil && (resp == nil || !resp.IsError()):
		touch()
		return resp, ok2xx
	case err == logical.ErrInvalidRequest || (err == nil && resp.IsError()):
		if after := m.dump(); !sameDump(before, after) {
			m.t.Fatalf("%s %s answered 400 (%s) but changed storage", op, path, respErr(resp))
		}
		return resp, bad4xx
	default:
		touch()
		m.fault5xx(path, err)
		return resp, err5xx
	}
}

func (m *model) fault5xx(path string, err error) {
	if !m.faulted {
		m.t.Fatalf("%s answered 5xx without an injected storage fault: %v", path, err)
	}
}

func (m *model) dump() map[string]string {
	out := map[string]string{}
	keys, _ := logical.CollectKeys(context.Background(), &m.s.InmemStorage)
	for _, k := range keys {
		e, _ := m.s.InmemStorage.Get(context.Background(), k)
		if e != nil {
			out[k] = string(e.Value)
		}
	}
	return out
}

func sameDump(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// --- draws ---

func drawDuration(t *rapid.T, label string, choices ...int) any {
	v := rapid.SampledFrom(choices).Draw(t, label)
	if rapid.IntRange(0, 3).Draw(t, label+"-as-text") == 0 {
		return fmt.Sprintf("%ds", v)
	}
	return v
}

// drawOdd sometimes replaces a value by null, a wrong type or garbage.
func drawOdd(t *rapid.T, label string, v any) any {
	switch rapid.IntRange(0, 19).Draw(t, label+"-odd") {
	case 0:
		return nil
	case 1:
		return map[string]any{"x": 1}
	case 2:
		return "junk"
	}
	return v
}

func (m *model) ring(name string) *ringEntry {
	r, err := readRing(context.Background(), &m.s.InmemStorage, name)
	if err != nil {
		m.t.Fatalf("read ring %s: %v", name, err)
	}
	return r
}

// --- actions ---

func (m *model) config(t *rapid.T) {
	data := map[string]any{}
	if rapid.Bool().Draw(t, "set-issuer") {
		data["issuer"] = drawOdd(t, "issuer", modelIssuer)
	}
	if rapid.Bool().Draw(t, "set-max-age") {
		data["jwks_max_age"] = drawOdd(t, "jwks_max_age", drawDuration(t, "max-age", 1, 2, 5, 10, 30, 60))
	}
	if rapid.Bool().Draw(t, "set-verifiers") {
		data["verifiers"] = drawOdd(t, "verifiers", rapid.SliceOfDistinct(rapid.SampledFrom(modelIDs), rapid.ID[string]).Draw(t, "ids"))
	}
	if rapid.IntRange(0, 4).Draw(t, "set-cidrs") == 0 {
		data["verifier_cidrs"] = drawOdd(t, "verifier_cidrs", []any{"192.0.2.0/24"})
	}
	m.do(m.a, logical.UpdateOperation, "config", data)
}

func (m *model) ringWrite(t *rapid.T) {
	name := rapid.SampledFrom(modelRings).Draw(t, "ring")
	data := map[string]any{}
	period := rapid.SampledFrom([]int{10, 15, 20, 30, 60, 600, 3600}).Draw(t, "period")
	if rapid.IntRange(0, 3).Draw(t, "set-period") > 0 {
		data["rotation_period"] = drawOdd(t, "rotation_period", period)
	}
	if rapid.IntRange(0, 3).Draw(t, "set-lead") > 0 {
		lead := period * rapid.SampledFrom([]int{1, 2, 4, 10, 20}).Draw(t, "lead-tenths") / 10
		data["publish_lead"] = drawOdd(t, "publish_lead", max(lead, 2))
	}
	if rapid.IntRange(0, 3).Draw(t, "set-overlap") > 0 {
		v := max(61, period*rapid.SampledFrom([]int{2, 5, 10, 30, 60}).Draw(t, "overlap-tenths")/10)
		data["verification_ttl"] = drawOdd(t, "verification_ttl", drawDuration(t, "overlap", v, v+60, 120, 600, 3600))
	}
	if rapid.Bool().Draw(t, "set-alg") {
		alg := rapid.SampledFrom([]string{"EdDSA", "EdDSA", "ES256", "ES256", "ES384", "ES512", "RS256", "PS256", "HS256"}).Draw(t, "alg")
		data["algorithm"] = drawOdd(t, "algorithm", alg)
		if isRSA(alg) && rapid.IntRange(0, 9).Draw(t, "set-bits") == 0 {
			data["rsa_bits"] = rapid.SampledFrom([]int{2048, 3072, 1024}).Draw(t, "bits")
		}
	}
	if rapid.IntRange(0, 5).Draw(t, "set-gate") == 0 {
		data["min_verifier_coverage"] = rapid.SampledFrom([]float64{0, 0.5, 1}).Draw(t, "coverage")
		data["max_activation_delay"] = rapid.SampledFrom([]int{0, 5, 10, period}).Draw(t, "delay")
	}
	if rapid.IntRange(0, 19).Draw(t, "unknown-field") == 0 {
		data["exportable"] = true
	}
	m.do(m.a, logical.UpdateOperation, "keys/"+name, data)
}

// ringTweak changes one setting of an existing ring relative to its value,
// the way an operator adjusts a policy (and most often a valid change).
func (m *model) ringTweak(t *rapid.T) {
	// Every draw comes before the state is read, so that a kept failing
	// sequence replays the same way after a fix changes the state.
	name := rapid.SampledFrom(modelRings).Draw(t, "ring")
	factor := rapid.SampledFrom([]float64{0.25, 0.5, 0.9, 1.1, 2}).Draw(t, "factor")
	field := rapid.IntRange(0, 4).Draw(t, "field")
	shortest := rapid.Bool().Draw(t, "shortest")
	alg := rapid.SampledFrom([]string{"EdDSA", "ES256", "ES384"}).Draw(t, "alg")
	r := m.ring(name)
	if r == nil {
		return
	}
	scale := func(v int64) int64 { return max(1, int64(float64(v)*factor)) }
	var data map[string]any
	switch field {
	case 0:
		// The shortest overlap the roles allow, or a scaled one.
		v := scale(r.VerificationTTL)
		if shortest {
			v = clockSkewSeconds + 1
			for _, role := range modelRoles {
				if rr := m.role(role); rr != nil && rr.Key == name {
					v = max(v, rr.MaxTTL+clockSkewSeconds)
				}
			}
		}
		data = map[string]any{"verification_ttl": v}
	case 1:
		data = map[string]any{"rotation_period": scale(r.RotationPeriod)}
	case 2:
		data = map[string]any{"publish_lead": scale(r.PublishLead)}
	case 3:
		data = map[string]any{"algorithm": alg}
	case 4:
		data = map[string]any{"min_verifier_coverage": 0.5, "max_activation_delay": min(r.RotationPeriod, scale(r.RotationPeriod))}
	}
	m.do(m.a, logical.UpdateOperation, "keys/"+name, data)
}

// roleTweak changes one setting of an existing role.
func (m *model) roleTweak(t *rapid.T) {
	name := rapid.SampledFrom(modelRoles).Draw(t, "role")
	move := rapid.Bool().Draw(t, "move")
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	factor := rapid.SampledFrom([]float64{0.1, 0.5, 2, 10}).Draw(t, "factor")
	r := m.role(name)
	if r == nil {
		return
	}
	var data map[string]any
	if move {
		data = map[string]any{"key": ring}
	} else {
		v := max(1, int64(float64(r.MaxTTL)*factor))
		data = map[string]any{"max_ttl": v, "ttl": v}
	}
	m.do(m.a, logical.UpdateOperation, "roles/"+name, data)
}

func (m *model) role(name string) *roleEntry {
	r, err := readRole(context.Background(), &m.s.InmemStorage, name)
	if err != nil {
		m.t.Fatalf("read role %s: %v", name, err)
	}
	return r
}

func (m *model) ringDelete(t *rapid.T) {
	name := rapid.SampledFrom(modelRings).Draw(t, "ring")
	force := rapid.Bool().Draw(t, "force")
	before := m.ring(name)
	_, out := m.do(m.a, logical.DeleteOperation, "keys/"+name, map[string]any{"force": force})
	if out == ok2xx && force && before != nil {
		for _, tok := range m.tokens {
			if tok.ring == name {
				tok.exempt = true
			}
		}
	}
}

func (m *model) roleWrite(t *rapid.T) {
	name := rapid.SampledFrom(modelRoles).Draw(t, "role")
	data := map[string]any{}
	if rapid.IntRange(0, 3).Draw(t, "set-key") > 0 {
		data["key"] = drawOdd(t, "key", rapid.SampledFrom(append([]string{"A"}, modelRings...)).Draw(t, "key-name"))
	}
	if rapid.IntRange(0, 3).Draw(t, "set-aud") > 0 {
		data["audiences"] = drawOdd(t, "audiences", []any{"api", "admin"})
	}
	maxTTL := rapid.SampledFrom([]int{1, 5, 10, 30, 60, 300, 3600}).Draw(t, "max_ttl")
	if rapid.Bool().Draw(t, "set-ttls") {
		data["max_ttl"] = drawOdd(t, "max_ttl", maxTTL)
		data["ttl"] = rapid.IntRange(1, maxTTL).Draw(t, "ttl")
	}
	if rapid.IntRange(0, 3).Draw(t, "set-claims") == 0 {
		data["claims"] = drawOdd(t, "claims", map[string]any{"team": "x"})
		data["allowed_claims"] = drawOdd(t, "allowed_claims", []any{"scope"})
	}
	if rapid.IntRange(0, 4).Draw(t, "set-subject") == 0 {
		data["subject_template"] = "static-subject"
		data["allowed_subjects"] = []any{"svc-*"}
	}
	m.do(m.a, logical.UpdateOperation, "roles/"+name, data)
}

func (m *model) roleDelete(t *rapid.T) {
	m.do(m.a, logical.DeleteOperation, "roles/"+rapid.SampledFrom(modelRoles).Draw(t, "role"), nil)
}

func (m *model) signRequest(t *rapid.T) map[string]any {
	data := map[string]any{}
	if rapid.Bool().Draw(t, "set-ttl") {
		data["ttl"] = drawOdd(t, "ttl", rapid.SampledFrom([]int{1, 5, 30, 60, 300, 3600, 7200}).Draw(t, "ttl-value"))
	} else if rapid.Bool().Draw(t, "longest") {
		data["ttl"] = "-max-"
	}
	if rapid.IntRange(0, 3).Draw(t, "set-claims") == 0 {
		data["claims"] = drawOdd(t, "claims", map[string]any{"scope": "read"})
	}
	if rapid.IntRange(0, 3).Draw(t, "set-audience") == 0 {
		data["audience"] = rapid.SampledFrom([]any{"api", "admin", "evil"}).Draw(t, "audience")
	}
	if rapid.IntRange(0, 5).Draw(t, "set-subject") == 0 {
		data["subject"] = rapid.SampledFrom([]string{"svc-a", "root"}).Draw(t, "subject")
	}
	return data
}

func (m *model) sign(t *rapid.T)          { m.signOn(t, m.a) }
func (m *model) signOnStandby(t *rapid.T) { m.signOn(t, m.b) }

func (m *model) signOn(t *rapid.T, n *modelNode) {
	role := rapid.SampledFrom(modelRoles).Draw(t, "role")
	data := m.signRequest(t)
	m.longest(role, data)
	must := m.signMustSucceed(n, role, data)
	resp, out := m.do(n, logical.UpdateOperation, "sign/"+role, data)
	if out == ok2xx {
		m.record(n, role, resp.Data)
	} else if must != "" {
		m.t.Fatalf("%s: sign/%s was refused (%s) though it must succeed: %s", n.name, role, respErr(resp), must)
	}
}

// longest turns a drawn "-max-" ttl into the role's max_ttl: the tokens
// that test the overlap hardest.
func (m *model) longest(role string, data map[string]any) {
	if data["ttl"] != "-max-" {
		return
	}
	if r := m.role(role); r != nil {
		data["ttl"] = r.MaxTTL
	} else {
		delete(data, "ttl")
	}
}

func (m *model) signBatch(t *rapid.T) {
	role := rapid.SampledFrom(modelRoles).Draw(t, "role")
	n := rapid.IntRange(1, 4).Draw(t, "items")
	items := make([]any, n)
	for i := range items {
		item := m.signRequest(t)
		m.longest(role, item)
		items[i] = item
	}
	resp, out := m.do(m.a, logical.UpdateOperation, "sign/"+role, map[string]any{"batch_input": items})
	if out != ok2xx {
		return
	}
	for _, r := range resp.Data["batch_results"].([]map[string]any) {
		if r["token"] != nil {
			m.record(m.a, role, r)
		}
	}
}

// record verifies a new token with go-jose against the JWKS its node
// serves, and adds it to the ledger.
func (m *model) record(n *modelNode, role string, data map[string]any) {
	tok := data["token"].(string)
	kid := data["kid"].(string)
	sched := n.b.clock.read().Schedule
	_, body := m.fetchDoc(n, "jwks/"+m.roleRing(role, n))
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		m.t.Fatalf("JWKS does not parse: %v", err)
	}
	parsed, err := jwt.ParseSigned(tok, allJOSEAlgs)
	if err != nil {
		m.t.Fatalf("token does not parse: %v", err)
	}
	keys := set.Key(kid)
	if len(keys) != 1 || parsed.Headers[0].KeyID != kid || keys[0].Algorithm != parsed.Headers[0].Algorithm {
		m.t.Fatalf("the token's kid %s is not served once, with its alg, by the JWKS of its ring at signing", kid)
	}
	var claims jwt.Claims
	if err := parsed.Claims(keys[0].Key, &claims); err != nil {
		m.t.Fatalf("token of %s does not verify with go-jose against the served key: %v", kid, err)
	}
	if claims.Expiry.Time().Unix() != data["expires_at"].(int64) || claims.IssuedAt.Time().Unix() != data["issued_at"].(int64) {
		m.t.Fatalf("the token's times differ from the response's")
	}
	m.checkRolePolicy(role, claims)
	if claims.NotBefore == nil || *claims.NotBefore != *claims.IssuedAt || claims.IssuedAt.Time().Unix() > sched {
		m.t.Fatalf("token of %s: iat %v, nbf %v: want nbf = iat, never ahead of the schedule %d", kid, claims.IssuedAt, claims.NotBefore, sched)
	}
	if m.jtis[claims.ID] || claims.ID == "" {
		m.t.Fatalf("jti %q issued twice (or empty)", claims.ID)
	}
	m.jtis[claims.ID] = true
	jwk, _ := keys[0].MarshalJSON()
	ring := m.ring(m.roleRing(role, n))
	signer := false
	for _, k := range ring.Keys {
		if k.KID == kid && k.ActivateAt < k.PublishAt+k.Lead && !k.leadWaived() {
			m.t.Fatalf("key %s signs %ds after publication, before its lead (%ds), and is not recorded as forced or imported", kid, k.ActivateAt-k.PublishAt, k.Lead)
		}
		if k.KID == kid {
			signer = true
			if k.Imported {
				modelAdoptStats.importedTokens.Add(1)
			}
		}
	}
	// Trusted keys never sign: the signer is one of the ring's own keys.
	if !signer {
		m.t.Fatalf("token signed by %s, which is not a signing key of ring %s (trusted: %v)", kid, ring.Name, m.trustedKIDs(ring.Name))
	}
	m.tokens = append(m.tokens, &modelToken{ring: ring.Name, kid: kid, jwk: jwk, signedAt: sched,
		iat: data["issued_at"].(int64), exp: data["expires_at"].(int64), ahead: sched > m.a.b.clock.read().Schedule})
}

func (m *model) roleRing(role string, n *modelNode) string {
	n.b.mu.RLock()
	defer n.b.mu.RUnlock()
	return n.b.roles[role].Key
}

// pickKID draws a kid of ring in any state, or an unknown kid. It draws an
// index, not a kid, so a kept failing sequence still replays after a fix
// changes which keys a ring holds.
func (m *model) pickKID(t *rapid.T, ring string) string {
	kids := []string{"no-such-kid"}
	if r := m.ring(ring); r != nil {
		for _, k := range r.Keys {
			kids = append(kids, k.KID)
		}
	}
	kids = append(kids, m.trustedKIDs(ring)...)
	return kids[rapid.IntRange(0, 15).Draw(t, "kid-index")%len(kids)]
}

func (m *model) rotate(t *rapid.T) {
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	data := map[string]any{}
	if rapid.Bool().Draw(t, "force") {
		data["force"] = true
	}
	if rapid.IntRange(0, 3).Draw(t, "revoke-active") == 0 {
		data["revoke_active"] = true
	}
	if rapid.IntRange(0, 3).Draw(t, "expect") == 0 {
		data["expected_active_kid"] = m.pickKID(t, ring)
	}
	m.do(m.a, logical.UpdateOperation, "keys/"+ring+"/rotate", data)
}

func (m *model) revoke(t *rapid.T) {
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	m.do(m.a, logical.UpdateOperation, "keys/"+ring+"/revoke", map[string]any{"kid": m.pickKID(t, ring)})
}

func (m *model) rollback(t *rapid.T) {
	m.rollbackChecked(rapid.SampledFrom(modelRings).Draw(t, "ring"))
}

func (m *model) maintain(t *rapid.T) {
	err := m.a.b.Backend.PeriodicFunc(context.Background(), &logical.Request{Storage: m.s, Operation: logical.RollbackOperation})
	m.opNow = m.a.b.clock.read().Schedule
	m.maxSchedule = max(m.maxSchedule, m.opNow)
	if err != nil {
		m.fault5xx("periodic", err)
		return
	}
	m.checkPrivates()
	m.checkStock(m.opNow)
}

func (m *model) advance(t *rapid.T) {
	m.clock.Advance(time.Duration(rapid.IntRange(1, 30).Draw(t, "seconds")) * time.Second)
}

func (m *model) advanceLong(t *rapid.T) {
	m.clock.Advance(time.Duration(rapid.SampledFrom([]int{60, 300, 1800, 7200, 86400}).Draw(t, "seconds")) * time.Second)
}

func (m *model) clockBack(t *rapid.T) {
	m.clock.Advance(-time.Duration(rapid.SampledFrom([]int{1, 30, 120, 3600}).Draw(t, "seconds")) * time.Second)
}

func (m *model) clockJump(t *rapid.T) {
	d := time.Duration(rapid.SampledFrom([]int{30, 120, 3600, 48 * 3600}).Draw(t, "seconds")) * time.Second
	m.clock.Step(d)
	m.jump += d
}

func (m *model) clockCorrect(t *rapid.T) {
	m.clock.Step(-m.jump)
	m.jump = 0
}

func (m *model) clockAccept(t *rapid.T) {
	n := m.a
	if rapid.Bool().Draw(t, "standby") {
		n = m.b
	}
	resp, out := m.do(n, logical.UpdateOperation, "clock/accept", nil)
	if out == ok2xx && (resp.Data["held_seconds"] != int64(0) || resp.Data["schedule_time"].(int64) < resp.Data["wall_time"].(int64)) {
		m.t.Fatalf("clock/accept left the schedule held: %v", resp.Data)
	}
	m.accepted()
}

// accepted records that a node may have taken the wall clock's time.
func (m *model) accepted() {
	m.allowance = max(m.allowance, int64(m.jump/time.Second))
}

func (m *model) restart(t *rapid.T) {
	m.accepted()
	if rapid.Bool().Draw(t, "standby") {
		m.b = m.start("standby")
		return
	}
	m.restartActive()
}

// restartActive starts a new process for the active node. It resumes from
// the later of the wall clock and the high-water mark in storage, which may
// be before the last time the old process acted on: the tokens signed since
// may see their key's retirement set that much earlier.
func (m *model) restartActive() {
	m.a = m.start("active")
	if _, err := m.a.b.load(context.Background(), m.s); err != nil {
		m.t.Fatalf("load: %v", err)
	}
	r0 := m.a.b.clock.read().Schedule
	for _, tok := range m.tokens {
		tok.rewound = max(tok.rewound, tok.signedAt-r0)
	}
}

// crash makes every write from the n-th on fail, as a crash between two
// writes would, runs one writing operation, and restarts the active node.
func (m *model) crash(t *rapid.T) {
	m.s.mu.Lock()
	m.s.failAt = m.s.writes + rapid.IntRange(1, 4).Draw(t, "failing-write")
	m.s.mu.Unlock()
	m.faulted = true
	switch rapid.IntRange(0, 6).Draw(t, "operation") {
	case 5:
		m.importKey(t)
	case 6:
		m.trustKey(t)
	case 0:
		m.rotate(t)
	case 1:
		m.revoke(t)
	case 2:
		m.ringWrite(t)
	case 3:
		m.maintain(t)
	case 4:
		m.ringDelete(t)
	}
	m.s.mu.Lock()
	m.s.failAt = 0
	m.s.mu.Unlock()
	m.faulted = false
	m.accepted()
	m.restartActive()
}

func (m *model) fetch(t *rapid.T) {
	n := m.a
	if rapid.Bool().Draw(t, "standby") {
		n = m.b
	}
	path := rapid.SampledFrom([]string{"jwks", ".well-known/jwks.json", "jwks/a", "jwks/b", ".well-known/openid-configuration"}).Draw(t, "path")
	data := map[string]any{}
	if rapid.Bool().Draw(t, "with-id") {
		data["verifier"] = rapid.SampledFrom(append([]string{"mallory"}, modelIDs...)).Draw(t, "verifier")
	}
	headers := map[string][]string{"User-Agent": {rapid.SampledFrom([]string{"envoy", "jose", "curl"}).Draw(t, "ua")}}
	if i := rapid.IntRange(-1, 15).Draw(t, "etag-index"); i >= 0 && len(m.etags) > 0 {
		headers["If-None-Match"] = []string{m.etags[len(m.etags)-1-i%len(m.etags)]}
	}
	resp, err := n.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: path, Data: data, Headers: headers, Storage: m.s,
		Connection: &logical.Connection{RemoteAddr: rapid.SampledFrom([]string{"192.0.2.7:1", "198.51.100.9:2"}).Draw(t, "addr")},
	})
	if err != nil {
		m.t.Fatalf("fetch %s: %v", path, err)
	}
	m.checkNoSecrets(path, resp)
	if resp != nil && resp.Headers["ETag"] != nil {
		m.etags = append(m.etags, resp.Headers["ETag"][0])
	}
}

// --- invariants ---

// fetchDoc fetches a document from node n without telling the tracker
// anything the actions did not (no verifier id, a fixed client).
func (m *model) fetchDoc(n *modelNode, path string) (*logical.Response, []byte) {
	resp, err := n.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: path, Storage: m.s,
		Connection: &logical.Connection{RemoteAddr: "203.0.113.250:1"},
	})
	if err != nil {
		m.t.Fatalf("%s: fetch %s: %v", n.name, path, err)
	}
	if resp == nil {
		return nil, nil
	}
	if st := resp.Data[logical.HTTPStatusCode]; st != 200 {
		if path == ".well-known/openid-configuration" && st == 404 {
			return nil, nil
		}
		m.t.Fatalf("%s: fetch %s: status %v", n.name, path, st)
	}
	return resp, resp.Data[logical.HTTPRawBody].([]byte)
}

func (m *model) check(t *rapid.T) {
	m.steps++
	for _, key := range m.s.drain() {
		m.b.b.invalidate(context.Background(), key)
	}
	// A node reads its stored state, and the high-water marks in it, on
	// its first request.
	for _, n := range []*modelNode{m.a, m.b} {
		if _, err := n.b.load(context.Background(), m.s); err != nil {
			m.t.Fatalf("%s: load: %v", n.name, err)
		}
	}
	rings := map[string]*ringEntry{}
	for _, name := range modelRings {
		if r := m.ring(name); r != nil {
			rings[name] = r
		}
	}
	m.markExempt(rings)
	m.checkHistory(rings)
	m.trackDepartures(rings)
	m.checkIdentities(rings)
	var bodies [2][]byte
	var times [2]int64
	for i, n := range []*modelNode{m.a, m.b} {
		times[i] = m.checkClock(n)
		var removal int64
		bodies[i], removal = m.checkServed(n, rings)
		m.checkDiscovery(n, rings, bodies[i], removal, times[i])
		m.checkLiveKids(n, bodies[i], times[i])
	}
	for name, r := range rings {
		checkFuture(m.t, name, r.Keys, times[0])
	}
	// The same state at the same time gives the same document on both nodes.
	if times[0] == times[1] && !bytes.Equal(bodies[0], bodies[1]) {
		m.t.Fatalf("at the same time the nodes serve different JWKS:\n%s\n%s", bodies[0], bodies[1])
	}
	m.checkTokens(rings, times[0])
	m.prev = rings
	m.checkPublishing()
}

// checkClock: the schedule never runs ahead of real time by more than the
// tolerance for clock steps, unless a step was accepted.
func (m *model) checkClock(n *modelNode) int64 {
	r := n.b.clock.read()
	// Never backwards inside one process (docs/invariants.md, time).
	if r.Schedule < n.last {
		m.t.Fatalf("%s: the schedule went back from %d to %d", n.name, n.last, r.Schedule)
	}
	n.last = r.Schedule
	real := testStart.Unix() + int64(m.clock.Elapsed()/time.Second)
	if r.Schedule > real+m.allowance+clockSkewSeconds {
		m.t.Fatalf("%s: the schedule is %ds ahead of real time; only %ds of clock steps were accepted", n.name, r.Schedule-real, m.allowance)
	}
	return r.Schedule
}

// checkHistory: a changed timestamp never lands before now, and once a
// ring has had an active key it keeps one until it is deleted.
func (m *model) checkHistory(rings map[string]*ringEntry) {
	now := m.a.b.clock.read().Schedule
	if m.opNow != 0 {
		now = m.opNow
	}
	m.opNow = 0
	for name, r := range rings {
		if len(m.dumpRing(name)) > maxRingEntryBytes {
			m.t.Fatalf("ring %s is stored in %d bytes, above %d", name, len(m.dumpRing(name)), maxRingEntryBytes)
		}
		n := 0
		for i := range r.Keys {
			if r.Keys[i].state(now) == stateActive {
				n++
			}
		}
		if n > 1 {
			m.t.Fatalf("ring %s has %d active keys", name, n)
		}
		// A restart may resume from a persisted high-water mark a little
		// before the last time the previous process acted on (docs/
		// invariants.md): the check holds at every time from the first
		// activation on.
		if first, ok := m.active[name]; ok && r.DeletedAt == 0 && n == 0 && now >= first {
			m.t.Fatalf("ring %s had an active key at %d and has none at %d (a dry pipeline)", name, first, now)
		}
		if _, ok := m.active[name]; !ok && n == 1 && r.DeletedAt == 0 {
			m.active[name] = now
		}
		if r.DeletedAt != 0 {
			delete(m.active, name)
		}
		old := m.prev[name]
		if old == nil {
			continue
		}
		cur := map[string]*signingKey{}
		for i := range r.Keys {
			cur[r.Keys[i].KID] = &r.Keys[i]
		}
		for i := range old.Keys {
			o, c := &old.Keys[i], cur[old.Keys[i].KID]
			if c == nil {
				m.gone[o.KID] = true
				continue
			}
			if c.revoked() {
				m.gone[c.KID] = true
				continue
			}
			for _, p := range [][2]int64{{o.ActivateAt, c.ActivateAt}, {o.RetireAt, c.RetireAt}, {o.RemoveAt, c.RemoveAt}} {
				if p[0] != p[1] && p[1] != 0 && p[1] < now {
					if os.Getenv("MODEL_DEBUG") != "" {
						fmt.Printf("now %d\nOLD %s\nNEW %s\nA logs %s\n", now-testStart.Unix(), keysSummary(old.Keys), keysSummary(r.Keys), m.a.logs.String())
					}
					m.t.Fatalf("ring %s kid %s: a timestamp moved from %d to %d, before now (%d)", name, o.KID, p[0], p[1], now)
				}
			}
		}
	}
	for name, old := range m.prev {
		if rings[name] == nil {
			for _, k := range old.Keys {
				m.gone[k.KID] = true
			}
			delete(m.active, name)
		}
	}
}

func (m *model) dumpRing(name string) []byte {
	e, _ := m.s.InmemStorage.Get(context.Background(), ringPrefix+name)
	if e == nil {
		return nil
	}
	return e.Value
}

// checkServed: every JWKS a node serves is exactly the keys its timestamps
// publish at the node's time, within the bounds, with Cache-Control that
// never runs past the next removal; no gone kid is ever served.
func (m *model) checkServed(n *modelNode, rings map[string]*ringEntry) ([]byte, int64) {
	now := n.b.clock.read().Schedule
	var mount []byte
	mountRemoval := forever
	for _, path := range []string{"jwks", ".well-known/jwks.json", "jwks/a", "jwks/b", "jwks/c"} {
		resp, body := m.fetchDoc(n, path)
		scope := strings.TrimPrefix(path, "jwks/")
		var want []string
		removal := forever
		for name, r := range rings {
			if !strings.HasPrefix(path, "jwks/") || name == scope {
				for i := range r.Keys {
					if inJWKS(&r.Keys[i], now) {
						want = append(want, r.Keys[i].KID)
					}
				}
				// Trusted keys: from their write until expires_at.
				for i := range r.Trusted {
					if t := &r.Trusted[i]; t.AddedAt <= now && now < t.ExpiresAt {
						want = append(want, t.KID)
						removal = min(removal, t.ExpiresAt)
					}
				}
				removal = min(removal, firstRemovalAfter(r.Keys, now))
			}
		}
		if resp == nil {
			if strings.HasPrefix(path, "jwks/") && rings[scope] == nil {
				continue
			}
			m.t.Fatalf("%s: %s answered nothing", n.name, path)
		}
		got := kidsOf(m.t, body)
		sort.Strings(want)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			m.t.Fatalf("%s at %d: %s serves %v, but the stored timestamps publish %v", n.name, now, path, got, want)
		}
		for _, k := range got {
			if m.protected(k) {
				m.t.Fatalf("%s: %s serves %s, which was revoked or forgotten", n.name, path, k)
			}
		}
		if !strings.HasPrefix(path, "jwks/") {
			if len(body) > maxJWKSBytes {
				m.t.Fatalf("%s: the mount JWKS is %d bytes, above %d", n.name, len(body), maxJWKSBytes)
			}
			mount = body
		} else if len(got) > maxRingKeys {
			if os.Getenv("MODEL_DEBUG") != "" {
				fmt.Printf("now %d\nKEYS %s\nTRUSTED %d\nA logs %s\n", now-testStart.Unix(), keysSummary(rings[scope].Keys), len(rings[scope].Trusted), m.a.logs.String())
			}
			m.t.Fatalf("%s: ring %s publishes %d keys, above %d", n.name, scope, len(got), maxRingKeys)
		}
		var served []*ringEntry
		for name, r := range rings {
			if !strings.HasPrefix(path, "jwks/") || name == scope {
				served = append(served, r)
			}
		}
		m.checkCaching(n, path, resp, body, served, removal, now)
		if !strings.HasPrefix(path, "jwks/") {
			mountRemoval = removal
		}
	}
	return mount, mountRemoval
}

// inJWKS is docs/lifecycle.md's rule, written here apart from the plugin's
// own (published): a key is in the JWKS from its publish_at until its
// remove_at (for ever while it has none), and never once revoked.
func inJWKS(k *signingKey, now int64) bool {
	return k.RevokedAt == 0 && k.PublishAt <= now && (k.RemoveAt == 0 || now < k.RemoveAt)
}

// firstRemovalAfter is the next time a key of keys leaves the JWKS by its
// schedule (forever if none will): what max-age must not run past.
func firstRemovalAfter(keys []signingKey, now int64) int64 {
	first := forever
	for i := range keys {
		if k := &keys[i]; inJWKS(k, now) && k.RemoveAt > now {
			first = min(first, k.RemoveAt)
		}
	}
	return first
}

// markExempt exempts the tokens whose key is now revoked: they may stop
// verifying.
func (m *model) markExempt(rings map[string]*ringEntry) {
	for _, tok := range m.tokens {
		if r := rings[tok.ring]; r != nil {
			for i := range r.Keys {
				if r.Keys[i].KID == tok.kid && r.Keys[i].RevokedAt != 0 {
					tok.exempt = true
				}
			}
		}
	}
}

// checkTokens: every live token's key is still stored with the same public
// key, publishes until at least 60 s after the token's expiry, and never
// retired before the token was signed; tokens of revoked keys and
// force-deleted rings are exempt (their kids are gone instead).
func (m *model) checkTokens(rings map[string]*ringEntry, now int64) {
	for _, tok := range m.tokens {
		r := rings[tok.ring]
		var key *signingKey
		if r != nil {
			for i := range r.Keys {
				if r.Keys[i].KID == tok.kid {
					key = &r.Keys[i]
				}
			}
		}
		if key != nil && key.revoked() {
			tok.exempt = true
		}
		if tok.exempt || tok.ahead || now >= tok.exp {
			continue
		}
		// A restart that rewound the schedule may remove the key that much
		// earlier (docs/invariants.md, time): never before the token's
		// expiry less the rewind, plus the margin every token keeps.
		if key == nil && tok.rewound > 0 && now >= tok.exp-tok.rewound+clockSkewSeconds {
			continue
		}
		if key == nil {
			m.t.Fatalf("the key %s of a token live until %d (now %d) is gone from ring %s", tok.kid, tok.exp, now, tok.ring)
		}
		if key.RemoveAt != 0 && tok.exp-tok.rewound > key.RemoveAt-clockSkewSeconds {
			m.t.Fatalf("a token of %s expires at %d, past its key's remove_at %d - 60 (restarts moved the schedule back %d s)", tok.kid, tok.exp, key.RemoveAt, tok.rewound)
		}
		if key.RetireAt != 0 && key.RetireAt < tok.signedAt-tok.rewound {
			m.t.Fatalf("key %s retires at %d, before it signed a token at %d", tok.kid, key.RetireAt, tok.signedAt)
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(key.PublicJWK); err != nil {
			m.t.Fatalf("stored key %s: %v", tok.kid, err)
		}
		if b, _ := jwk.MarshalJSON(); !bytes.Equal(b, tok.jwk) {
			m.t.Fatalf("key %s changed its public key", tok.kid)
		}
	}
}

// checkPrivates: after a maintenance pass, private halves are stored for
// exactly the keys that can still sign.
func (m *model) checkPrivates() {
	now := m.a.b.clock.read().Schedule
	stored := m.dump()
	want := map[string]bool{}
	for _, name := range modelRings {
		r := m.ring(name)
		if r == nil {
			continue
		}
		for i := range r.Keys {
			if needsPrivate(r.Keys, i, r.schedule(), now) {
				want[privatePath(name, r.Keys[i].storeID())] = true
			}
		}
	}
	for path := range stored {
		if strings.HasPrefix(path, privatePrefix) && !want[path] {
			m.t.Fatalf("after maintenance %s is still stored, but its key can no longer sign", path)
		}
	}
	for path := range want {
		if _, ok := stored[path]; !ok {
			if os.Getenv("MODEL_DEBUG") != "" {
				for _, name := range modelRings {
					if r := m.ring(name); r != nil {
						fmt.Printf("now %d ring %s %s\n", now-testStart.Unix(), name, keysSummary(r.Keys))
					}
				}
				fmt.Println(m.a.logs.String())
			}
			m.t.Fatalf("after maintenance %s is missing, but its key can still sign", path)
		}
	}
}

func keysSummary(keys []signingKey) string {
	var b strings.Builder
	t0 := testStart.Unix()
	rel := func(t int64) int64 {
		if t == 0 {
			return 0
		}
		return t - t0
	}
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %.6s %s pub=%d act=%d ret=%d rem=%d rev=%d ov=%d lead=%d forced=%v rb=%v priv=%v",
			k.KID, k.Alg, rel(k.PublishAt), rel(k.ActivateAt), rel(k.RetireAt), rel(k.RemoveAt), rel(k.RevokedAt), k.Overlap, k.Lead, k.Forced, k.RollbackUsed, k.HasPrivate)
	}
	return b.String()
}
