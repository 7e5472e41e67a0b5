package jwtrotor

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// Maintenance writes only where Vault allows writes: on a performance
// standby, a DR secondary, and a performance secondary's replicated mounts it
// does nothing (the primary's writes arrive by replication); on the primary,
// a performance secondary's local mount, and a node that replicates nothing
// it stocks keys. Modelled on transit's auto-rotation test across
// replication states.
func TestMaintenanceAcrossReplicationStates(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		state  consts.ReplicationState
		local  bool
		writes bool
	}{
		{"no replication", 0, false, true},
		{"performance primary", consts.ReplicationPerformancePrimary, false, true},
		{"DR primary", consts.ReplicationDRPrimary, false, true},
		{"performance secondary", consts.ReplicationPerformanceSecondary, false, false},
		{"performance secondary, local mount", consts.ReplicationPerformanceSecondary, true, true},
		{"performance standby", consts.ReplicationPerformanceStandby, false, false},
		{"DR secondary", consts.ReplicationDRSecondary, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &logical.InmemStorage{}
			clock := &fakeClock{now: testStart}
			// Set up the ring on a node that may write.
			e := newEnvOn(t, s, clock)
			e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
			before := dump(t, s)
			keys := len(e.ring("k").Keys)
			clock.Advance(time.Hour)

			conf := logical.TestBackendConfig()
			conf.StorageView = s
			conf.Logger = hclog.NewNullLogger()
			conf.System = &logical.StaticSystemView{ReplicationStateVal: tc.state, LocalMountVal: tc.local}
			b := newBackend(clock)
			if err := b.Setup(context.Background(), conf); err != nil {
				t.Fatal(err)
			}
			if err := b.Backend.PeriodicFunc(context.Background(), &logical.Request{Storage: s, Operation: logical.RollbackOperation}); err != nil {
				t.Fatalf("maintenance: %v", err)
			}
			after := dump(t, s)
			changed := len(before) != len(after)
			for k, v := range before {
				changed = changed || after[k] != v
			}
			if changed != tc.writes {
				t.Fatalf("maintenance wrote storage: %v, want %v", changed, tc.writes)
			}
			if tc.writes {
				r, err := readRing(context.Background(), s, "k")
				if err != nil {
					t.Fatal(err)
				}
				if n := len(r.Keys); n <= keys-1 {
					t.Fatalf("an hour later maintenance left %d keys (from %d): it did not stock", n, keys)
				}
				if r.Keys[len(r.Keys)-1].ActivateAt <= clock.Now().Unix()+5*60 {
					t.Fatal("the pipeline is not stocked a lead ahead")
				}
			}
		})
	}
}
