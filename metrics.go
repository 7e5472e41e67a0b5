package jwtrotor

import (
	"maps"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are per mount: one plugin process serves every mount of the
// plugin, so each backend has its own registry and nothing is global.
// Per-kid series are deleted when their kid leaves the ring, so cardinality
// follows the bounded number of published keys.
type metrics struct {
	reg            *prometheus.Registry
	signed         *prometheus.CounterVec
	panics         *prometheus.CounterVec
	clockSteps     prometheus.Counter
	jwksRequests   *prometheus.CounterVec
	notModified    *prometheus.CounterVec
	rotations      *prometheus.CounterVec
	revocations    *prometheus.CounterVec
	rollbacks      *prometheus.CounterVec
	maintenanceErr *prometheus.CounterVec
	gateDelays     *prometheus.CounterVec
	adopted        *prometheus.CounterVec
	// publishFailures and publishRestored count per publisher (and
	// reason): failed uploads or read-backs, and objects written again
	// after they were deleted or changed out of band.
	publishFailures *prometheus.CounterVec
	publishRestored *prometheus.CounterVec

	// signedKids maps ring and kid to the kid's signing counter, so the
	// sign path does not hash labels, and so the series of kids that left
	// their ring can be found and deleted on every node (standbys sign
	// too, and never run maintenance).
	signedMu   sync.Mutex
	signedKids map[string]map[string]prometheus.Counter

	// names are the metric families, for the metrics path's schema.
	names []string
}

func newMetrics(b *backend) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), signedKids: map[string]map[string]prometheus.Counter{}}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "jwt_rotor", Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		m.names = append(m.names, "jwt_rotor_"+name)
		return c
	}
	m.signed = counter("tokens_signed_total", "Tokens signed, per ring and kid.", "ring", "kid")
	m.jwksRequests = counter("jwks_requests_total", "JWKS and discovery fetches, per document (all, a ring name, or discovery).", "document")
	m.notModified = counter("jwks_not_modified_total", "Fetches answered 304 Not Modified, per document.", "document")
	m.rotations = counter("rotations_total", "Key activations, per ring and reason (scheduled, manual, manual, forced, ...).", "ring", "reason")
	m.revocations = counter("revocations_total", "Revoked keys, per ring.", "ring")
	m.rollbacks = counter("rollbacks_total", "Rollbacks, per ring.", "ring")
	m.maintenanceErr = counter("maintenance_failures_total", "Failed maintenance passes, per ring (ring=\"(mount)\" for failures of the whole pass).", "ring")
	m.gateDelays = counter("activation_gate_delays_total", "Times the verifier gate delayed an activation, per ring.", "ring")
	m.adopted = counter("keys_adopted_total", "Keys an adopted issuer brought, per ring and origin (imported: a signing key; trusted: a verify-only public key).", "ring", "origin")
	m.publishFailures = counter("publisher_failures_total", "Failed uploads and read-backs of a publisher's copy, per publisher and reason (unreachable, timeout, refused_address, denied, missing, precondition, redirect, rejected, server, garbage, stale_read).", "publisher", "reason")
	m.publishRestored = counter("publisher_restored_total", "Objects of a publisher's copy found deleted or changed outside the plugin and written again.", "publisher")
	m.panics = counter("panics_total", "Panics recovered, per place (request, existence check, periodic, invalidate); each failed one request or pass and nothing else.", "in")
	m.clockSteps = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "jwt_rotor", Name: "clock_steps_held_total", Help: "Forward steps of the wall clock, unexplained by elapsed time, that made the key schedule hold."})
	m.reg.MustRegister(m.clockSteps)
	m.reg.MustRegister(&stateCollector{b: b})
	m.names = append(m.names, "jwt_rotor_clock_steps_held_total")
	m.names = append(m.names, gaugeNames...)
	return m
}

// signedCounter is the signing counter of ring and kid.
func (m *metrics) signedCounter(ring, kid string) prometheus.Counter {
	m.signedMu.Lock()
	defer m.signedMu.Unlock()
	kids := m.signedKids[ring]
	if kids == nil {
		kids = map[string]prometheus.Counter{}
		m.signedKids[ring] = kids
	}
	c := kids[kid]
	if c == nil {
		c = m.signed.WithLabelValues(ring, kid)
		kids[kid] = c
	}
	return c
}

// syncRing deletes the signing series of kids no longer in ring r (every
// series of the ring when r is nil), on whichever node learns of it.
func (m *metrics) syncRing(ring string, r *ringEntry) {
	if r == nil {
		m.forgetRing(ring)
		return
	}
	live := make(map[string]bool, len(r.Keys))
	for i := range r.Keys {
		live[r.Keys[i].KID] = true
	}
	m.signedMu.Lock()
	defer m.signedMu.Unlock()
	for kid := range m.signedKids[ring] {
		if !live[kid] {
			m.signed.DeleteLabelValues(ring, kid)
			delete(m.signedKids[ring], kid)
		}
	}
}

// forgetRing drops every series of a ring.
func (m *metrics) forgetRing(ring string) {
	m.signedMu.Lock()
	delete(m.signedKids, ring)
	m.signedMu.Unlock()
	for _, v := range []*prometheus.CounterVec{m.signed, m.rotations, m.revocations, m.rollbacks, m.maintenanceErr, m.gateDelays, m.adopted} {
		v.DeletePartialMatch(prometheus.Labels{"ring": ring})
	}
	m.jwksRequests.DeleteLabelValues(ring)
	m.notModified.DeleteLabelValues(ring)
}

// syncPublisher drops the series of a deleted publisher (st nil).
func (m *metrics) syncPublisher(name string, st *publisherState) {
	if st == nil {
		m.publishFailures.DeletePartialMatch(prometheus.Labels{"publisher": name})
		m.publishRestored.DeleteLabelValues(name)
	}
}

// stateCollector computes the gauges from the in-memory state at scrape
// time, so they are never stale and vanish with their keys.
type stateCollector struct{ b *backend }

var (
	descKeyAge       = gaugeDesc("jwt_rotor_key_age_seconds", "Seconds since the key was published, per ring, kid and state.", []string{"ring", "kid", "state"}, nil)
	descNextRotation = gaugeDesc("jwt_rotor_seconds_to_next_rotation", "Seconds until the pending key activates (negative: overdue; absent: none pending).", []string{"ring"}, nil)
	descNextRemoval  = gaugeDesc("jwt_rotor_seconds_to_next_removal", "Seconds until the next published key leaves the JWKS.", []string{"ring"}, nil)
	descPublished    = gaugeDesc("jwt_rotor_published_keys", "Keys in the ring's JWKS now.", []string{"ring"}, nil)
	descActive       = gaugeDesc("jwt_rotor_active_keys", "Keys of the ring that sign now (1 when healthy).", []string{"ring"}, nil)
	descCoverage     = gaugeDesc("jwt_rotor_verifier_coverage", "Share of the declared verifiers counted for the ring that hold its active and pending keys and were seen in the last hour (docs/api.md, stale and coverage).", []string{"ring"}, nil)
	descStale        = gaugeDesc("jwt_rotor_stale_verifiers", "Declared verifiers stale for the ring: not seen in the last hour, or their last JWKS lacks its active or pending key.", []string{"ring"}, nil)
	descTracked      = gaugeDesc("jwt_rotor_tracked_clients", "JWKS fetchers tracked in memory on this node.", nil, nil)
	descImported     = gaugeDesc("jwt_rotor_imported_key_seconds_to_retirement", "Seconds until an imported key stops signing (its successor activates); verifiers that pinned it must use the JWKS by then. Present while it signs.", []string{"ring", "kid"}, nil)
	descTrusted      = gaugeDesc("jwt_rotor_trusted_key_seconds_to_expiry", "Seconds until a trusted key of an adopted issuer leaves the JWKS.", []string{"ring", "kid"}, nil)
	descPubSuccess   = gaugeDesc("jwt_rotor_publisher_last_success_timestamp_seconds", "When the publisher's copy was last written and read back (Unix seconds; absent: never).", []string{"publisher"}, nil)
	descPubBehind    = gaugeDesc("jwt_rotor_publisher_seconds_behind", "How long the publisher's acknowledged copy has lacked what the plugin serves for its scope (0: the same kids).", []string{"publisher"}, nil)
	descPubUnserved  = gaugeDesc("jwt_rotor_publisher_unserved_kids", "Kids in the publisher's acknowledged copy that the plugin no longer serves, per publisher and whether they were revoked (revoked=\"true\" above 0 is the alert to page on).", []string{"publisher", "revoked"}, nil)
	descHeld         = gaugeDesc("jwt_rotor_schedule_held_seconds", "How far the key schedule is held behind this node's wall clock after an unexplained forward step (0: not held).", nil, nil)
)

// gaugeNames are the families of the gauges below.
var gaugeNames []string

func gaugeDesc(name, help string, labels []string, constLabels prometheus.Labels) *prometheus.Desc {
	gaugeNames = append(gaugeNames, name)
	return prometheus.NewDesc(name, help, labels, constLabels)
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKeyAge, descNextRotation, descNextRemoval, descPublished, descActive, descCoverage, descStale, descTracked, descHeld, descImported, descTrusted, descPubSuccess, descPubBehind, descPubUnserved} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	b.mu.RLock()
	snap := &snapshot{config: b.config, declared: b.declared, rings: b.rings, roles: b.roles, publishers: b.publishers, gen: b.gen}
	loaded := b.loaded
	b.mu.RUnlock()
	if !loaded || snap.config == nil {
		return
	}
	clk := b.clock.read()
	now := clk.Schedule
	ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(clk.HeldSeconds))
	views, _ := b.tracker.snapshot(snap.declared)
	ch <- prometheus.MustNewConstMetric(descTracked, prometheus.GaugeValue, float64(len(views)))
	verdict := judgeVerifiers(views, snap.config, currentKids(snap, now), now, defaultVerifierWindowSeconds)
	c.collectPublishers(ch, snap, now)
	for _, name := range slices.Sorted(maps.Keys(snap.rings)) {
		r := snap.rings[name]
		published, active := 0, 0
		for i := range r.Keys {
			k := &r.Keys[i]
			st := k.state(now)
			if st == stateActive {
				active++
			}
			if k.published(now) {
				published++
				ch <- prometheus.MustNewConstMetric(descKeyAge, prometheus.GaugeValue, float64(now-k.PublishAt), name, k.KID, st)
			}
			if k.Imported && st == stateActive && k.RetireAt != 0 {
				ch <- prometheus.MustNewConstMetric(descImported, prometheus.GaugeValue, float64(k.RetireAt-now), name, k.KID)
			}
		}
		for i := range r.Trusted {
			if t := &r.Trusted[i]; t.published(now) {
				published++
				ch <- prometheus.MustNewConstMetric(descKeyAge, prometheus.GaugeValue, float64(now-t.AddedAt), name, t.KID, "trusted")
				ch <- prometheus.MustNewConstMetric(descTrusted, prometheus.GaugeValue, float64(t.ExpiresAt-now), name, t.KID)
			}
		}
		ch <- prometheus.MustNewConstMetric(descPublished, prometheus.GaugeValue, float64(published), name)
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(active), name)
		if t := ringNextRemoval(r, now); t != forever {
			ch <- prometheus.MustNewConstMetric(descNextRemoval, prometheus.GaugeValue, float64(t-now), name)
		}
		if r.DeletedAt != 0 {
			continue
		}
		if _, p := activeAndPending(r.Keys, now); p >= 0 {
			ch <- prometheus.MustNewConstMetric(descNextRotation, prometheus.GaugeValue, float64(r.Keys[p].ActivateAt-now), name)
			cov := verdict.Rings[name]
			ch <- prometheus.MustNewConstMetric(descCoverage, prometheus.GaugeValue, cov.Ratio, name)
			ch <- prometheus.MustNewConstMetric(descStale, prometheus.GaugeValue, float64(len(cov.Stale)), name)
		}
	}
}

// collectPublishers exports the publisher gauges from the same verdicts as
// the verifier report, from the states in memory (none before the first
// upload or report on this node).
func (c *stateCollector) collectPublishers(ch chan<- prometheus.Metric, snap *snapshot, now int64) {
	b := c.b
	b.pub.mu.Lock()
	states := maps.Clone(b.pub.states)
	b.pub.mu.Unlock()
	for _, v := range b.publisherVerdicts(snap, states, now) {
		if v.st != nil && v.st.AckedAt != 0 {
			ch <- prometheus.MustNewConstMetric(descPubSuccess, prometheus.GaugeValue, float64(v.st.AckedAt), v.Name)
		}
		ch <- prometheus.MustNewConstMetric(descPubBehind, prometheus.GaugeValue, float64(v.BehindSeconds), v.Name)
		ch <- prometheus.MustNewConstMetric(descPubUnserved, prometheus.GaugeValue, float64(len(v.Revoked)), v.Name, "true")
		ch <- prometheus.MustNewConstMetric(descPubUnserved, prometheus.GaugeValue, float64(len(v.Unserved)-len(v.Revoked)), v.Name, "false")
	}
}
