package changelog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/choreo-go/choreo/state"
)

func faultCreateTopics(err *kerr.Error) kfake.Fault {
	return kfake.Fault{Keys: []kmsg.Key{kmsg.CreateTopics}, Err: err, Count: -1}
}

// TestRestoreFull restores an empty DB from a log with overwrites and
// deletes; records in other partitions are not restored.
func TestRestoreFull(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("full", "s")
	e.createTopic(topic, 3, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	l := &changelogLog{topic: topic, part: 1}
	e.produce(l, rng, 20_000, 3_000)
	e.produce(&changelogLog{topic: topic, part: 0}, rng, 500, 100) // noise
	e.produce(&changelogLog{topic: topic, part: 2}, rng, 500, 100) // noise

	lis := newRecListener()
	r := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{Listener: lis, BatchRecords: 3000})
	runRestorer(t, r)
	db := state.NewMemory()
	res := restore(t, r, "0_1", db, StoreChangelog{Store: "s", Topic: topic, Partition: 1})

	checkStore(t, db, "s", l.model(0))
	if !res.Wiped || res.WipeReason != "no checkpoint" {
		t.Errorf("wiped=%v reason=%q", res.Wiped, res.WipeReason)
	}
	if res.Total != 20_000 || res.Restored["s"] != 20_000 {
		t.Errorf("restored %d %v, want 20000", res.Total, res.Restored)
	}
	end := e.endOffset(topic, 1)
	cp := checkpointOf(t, db)
	if pos := cp.Changelogs["s"]; pos.Offset != end || pos.TopicID == ([16]byte{}) {
		t.Errorf("checkpoint %+v, want offset %d", pos, end)
	}
	if time.Since(cp.Written) > time.Minute {
		t.Errorf("checkpoint written %v", cp.Written)
	}
	lis.mu.Lock()
	defer lis.mu.Unlock()
	if got := lis.starts["0_1/s"]; got != [2]int64{0, end} {
		t.Errorf("start %v", got)
	}
	if lis.batches["0_1/s"] != 20_000 || lis.ends["0_1/s"] != 20_000 {
		t.Errorf("listener batches %d end %d", lis.batches["0_1/s"], lis.ends["0_1/s"])
	}
}

// TestRestoreWarm replays only the records after the checkpoint, and nothing
// when the checkpoint is at the end.
func TestRestoreWarm(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("warm", "s")
	e.createTopic(topic, 1, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	l := &changelogLog{topic: topic, part: 0}
	e.produce(l, rng, 5_000, 500)

	lis := newRecListener()
	r := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{Listener: lis})
	runRestorer(t, r)
	sc := StoreChangelog{Store: "s", Topic: topic, Partition: 0}
	db := state.NewMemory()
	restore(t, r, "t", db, sc)
	cpOff := checkpointOf(t, db).Changelogs["s"].Offset

	e.produce(l, rng, 3_000, 500)
	lis.reset()
	res := restore(t, r, "t", db, sc)
	if res.Wiped {
		t.Fatalf("wiped: %s", res.WipeReason)
	}
	want := l.countFrom(cpOff)
	if want != 3_000 || res.Total != want {
		t.Errorf("restored %d, want %d", res.Total, want)
	}
	lis.mu.Lock()
	if lis.ends["t/s"] != want || lis.batches["t/s"] != want {
		t.Errorf("listener end %d batches %d, want %d", lis.ends["t/s"], lis.batches["t/s"], want)
	}
	if lis.starts["t/s"][0] != cpOff {
		t.Errorf("started at %d, want %d", lis.starts["t/s"][0], cpOff)
	}
	lis.mu.Unlock()
	checkStore(t, db, "s", l.model(0))

	// Nothing new: no records replayed, no listener calls.
	lis.reset()
	res = restore(t, r, "t", db, sc)
	if res.Wiped || res.Total != 0 {
		t.Errorf("warm restore: %+v", res)
	}
	lis.mu.Lock()
	if len(lis.starts)+len(lis.batches)+len(lis.ends) != 0 {
		t.Errorf("listener called on warm path: %v %v %v", lis.starts, lis.batches, lis.ends)
	}
	lis.mu.Unlock()
	checkStore(t, db, "s", l.model(0))
}

// TestRestoreDistrust covers the checkpoints that must not be trusted.
func TestRestoreDistrust(t *testing.T) {
	const stale = "stale-key"
	setup := func(t *testing.T, configs map[string]*string, now func() time.Time) (*env, *changelogLog, *Restorer, state.DB, StoreChangelog) {
		e := newEnv(t)
		topic := TopicName("distrust", "s")
		e.createTopic(topic, 2, configs)
		l := &changelogLog{topic: topic, part: 1}
		e.produce(l, rand.New(rand.NewPCG(5, 6)), 2_000, 300)
		r := NewRestorer(e.restoreClient(true), e.adm, RestorerOptions{Now: now, Logger: testLogger(t)})
		runRestorer(t, r)
		sc := StoreChangelog{Store: "s", Topic: topic, Partition: 1}
		db := state.NewMemory()
		restore(t, r, "t", db, sc)
		checkStore(t, db, "s", l.model(0))
		// Data the log does not have: must vanish with a wipe.
		var ws state.WriteSet
		ws.Put("s", []byte(stale), []byte("x"))
		if err := db.Apply(&ws, nil, true); err != nil {
			t.Fatal(err)
		}
		return e, l, r, db, sc
	}
	expectWipe := func(t *testing.T, res Result, reason string) {
		t.Helper()
		if !res.Wiped || !strings.Contains(res.WipeReason, reason) {
			t.Fatalf("wiped=%v reason=%q, want reason containing %q", res.Wiped, res.WipeReason, reason)
		}
	}

	t.Run("above end", func(t *testing.T) {
		_, l, r, db, sc := setup(t, nil, nil)
		cp := checkpointOf(t, db)
		pos := cp.Changelogs["s"]
		pos.Offset += 10
		cp.Changelogs["s"] = pos
		if err := db.Apply(nil, &cp, true); err != nil {
			t.Fatal(err)
		}
		res := restore(t, r, "t", db, sc)
		expectWipe(t, res, "above the end offset")
		checkStore(t, db, "s", l.model(0))
		if res.Total != int64(len(l.recs)) {
			t.Errorf("restored %d, want %d", res.Total, len(l.recs))
		}
	})

	t.Run("below log start", func(t *testing.T) {
		e, l, r, db, sc := setup(t, nil, nil)
		e.produce(l, rand.New(rand.NewPCG(7, 8)), 1_000, 300)
		del, err := e.adm.DeleteRecords(e.ctx(), offsetsAt(sc.Topic, sc.Partition, 2_500))
		if err != nil || del.Error() != nil {
			t.Fatal(err, del.Error())
		}
		res := restore(t, r, "t", db, sc)
		expectWipe(t, res, "below the log start offset")
		checkStore(t, db, "s", l.model(2_500))
		if res.Total != 500 {
			t.Errorf("restored %d, want 500", res.Total)
		}
	})

	t.Run("topic recreated", func(t *testing.T) {
		e, _, r, db, sc := setup(t, nil, nil)
		oldID := checkpointOf(t, db).Changelogs["s"].TopicID
		if _, err := e.adm.DeleteTopic(e.ctx(), sc.Topic); err != nil {
			t.Fatal(err)
		}
		e.createTopic(sc.Topic, 2, nil)
		// The old producer knows the old topic id: use a new one.
		prod, err := kgo.NewClient(kgo.SeedBrokers(e.b.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		e.prod = prod
		l := &changelogLog{topic: sc.Topic, part: 1}
		e.produce(l, rand.New(rand.NewPCG(9, 10)), 3_000, 300)
		res := restore(t, r, "t", db, sc)
		expectWipe(t, res, "topic id")
		checkStore(t, db, "s", l.model(0))
		if id := checkpointOf(t, db).Changelogs["s"].TopicID; id == oldID {
			t.Error("checkpoint keeps the old topic id")
		}
	})

	t.Run("too old", func(t *testing.T) {
		var mu sync.Mutex
		var skew time.Duration
		now := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(skew) }
		ms := "1000"
		e, l, r, db, sc := setup(t, map[string]*string{"delete.retention.ms": &ms}, now)

		// At the end: old but nothing after it to miss, so trusted.
		mu.Lock()
		skew = time.Hour
		mu.Unlock()
		res := restore(t, r, "t", db, sc)
		if res.Wiped || res.Total != 0 {
			t.Fatalf("checkpoint at the end distrusted: %+v", res)
		}
		// The warm restore refreshed the checkpoint's date.
		mu.Lock()
		skew = 2 * time.Hour
		mu.Unlock()
		e.produce(l, rand.New(rand.NewPCG(11, 12)), 100, 300)
		res = restore(t, r, "t", db, sc)
		expectWipe(t, res, "delete.retention.ms")
		checkStore(t, db, "s", l.model(0))
	})

	t.Run("one store of the task untrusted", func(t *testing.T) {
		e, l, r, db, sc := setup(t, nil, nil)
		topic2 := TopicName("distrust", "s2")
		e.createTopic(topic2, 2, nil)
		l2 := &changelogLog{topic: topic2, part: 1}
		e.produce(l2, rand.New(rand.NewPCG(13, 14)), 700, 100)
		sc2 := StoreChangelog{Store: "s2", Topic: topic2, Partition: 1}
		restore(t, r, "t", db, sc, sc2) // s2 has no position but is empty: no wipe
		checkStore(t, db, "s2", l2.model(0))

		cp := checkpointOf(t, db)
		pos := cp.Changelogs["s2"]
		pos.Offset = 10_000
		cp.Changelogs["s2"] = pos
		if err := db.Apply(nil, &cp, true); err != nil {
			t.Fatal(err)
		}
		res := restore(t, r, "t", db, sc, sc2)
		expectWipe(t, res, `store "s2"`)
		checkStore(t, db, "s", l.model(0))
		checkStore(t, db, "s2", l2.model(0))
		if res.Restored["s"] != int64(len(l.recs)) || res.Restored["s2"] != 700 {
			t.Errorf("restored %v", res.Restored)
		}
	})
}

func offsetsAt(topic string, part int32, off int64) kadm.Offsets {
	o := make(kadm.Offsets)
	o.AddOffset(topic, part, off, -1)
	return o
}

// TestRestoreReadCommitted restores only committed transactional data and
// terminates when the tail of the log is an aborted transaction, with and
// without KeepControlRecords.
func TestRestoreReadCommitted(t *testing.T) {
	for _, keep := range []bool{false, true} {
		name := "probe"
		if keep {
			name = "keep control records"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			topic := TopicName("txn", "s")
			e.createTopic(topic, 1, nil)
			rng := rand.New(rand.NewPCG(15, 16))
			l := &changelogLog{topic: topic, part: 0}
			e.produce(l, rng, 1_000, 200)

			txn, err := kgo.NewClient(
				kgo.SeedBrokers(e.b.Addrs()...),
				kgo.TransactionalID("txn-"+name),
				kgo.RecordPartitioner(kgo.ManualPartitioner()),
				kgo.ProducerLinger(0),
			)
			if err != nil {
				t.Fatal(err)
			}
			defer txn.Close()
			inTxn := func(commit bool, n int) {
				if err := txn.BeginTransaction(); err != nil {
					t.Fatal(err)
				}
				recs := genRecords(rng, topic, 0, n, 200)
				e.produceRecs(txn, recs)
				if err := txn.EndTransaction(e.ctx(), kgo.TransactionEndTry(commit)); err != nil {
					t.Fatal(err)
				}
				if commit {
					for _, r := range recs {
						l.recs = append(l.recs, logRec{off: r.Offset, key: string(r.Key), value: r.Value})
					}
				}
			}
			inTxn(true, 500)
			inTxn(false, 500)
			inTxn(true, 300)
			inTxn(false, 400) // the tail is aborted

			lis := newRecListener()
			r := NewRestorer(e.restoreClient(keep), e.adm, RestorerOptions{Listener: lis, BatchRecords: 256})
			runRestorer(t, r)
			db := state.NewMemory()
			start := time.Now()
			res := restore(t, r, "t", db, StoreChangelog{Store: "s", Topic: topic, Partition: 0})
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("restore took %v", d)
			}
			checkStore(t, db, "s", l.model(0))
			if res.Total != 1_800 {
				t.Errorf("restored %d, want 1800 committed records", res.Total)
			}
			end := e.endOffset(topic, 0)
			if got := checkpointOf(t, db).Changelogs["s"].Offset; got != end {
				t.Errorf("checkpoint offset %d, want end %d", got, end)
			}
			// A later warm restore replays nothing.
			res = restore(t, r, "t", db, StoreChangelog{Store: "s", Topic: topic, Partition: 0})
			if res.Wiped || res.Total != 0 {
				t.Errorf("warm restore after txn: %+v", res)
			}
		})
	}
}

// TestRestoreInterleavedAbort: an aborted transaction whose marker lies beyond
// the last stable offset (another transaction is still open) leaves no record
// and no marker before the end offset.
func TestRestoreInterleavedAbort(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("interleaved", "s")
	e.createTopic(topic, 1, nil)
	rng := rand.New(rand.NewPCG(17, 18))
	l := &changelogLog{topic: topic, part: 0}
	e.produce(l, rng, 200, 50)

	newTxn := func(id string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.b.Addrs()...), kgo.TransactionalID(id),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		return cl
	}
	a, b := newTxn("a"), newTxn("b")
	e.produceRecs(a, genRecords(rng, topic, 0, 20, 50))
	e.produceRecs(b, genRecords(rng, topic, 0, 1, 50))
	if err := a.EndTransaction(e.ctx(), kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	end := e.endOffset(topic, 0)
	if end != 220 {
		t.Fatalf("last stable offset %d, want 220 (b open)", end)
	}

	for _, keep := range []bool{false, true} {
		r := NewRestorer(e.restoreClient(keep), e.adm, RestorerOptions{})
		stop := runRestorer(t, r)
		db := state.NewMemory()
		res := restore(t, r, "t", db, StoreChangelog{Store: "s", Topic: topic, Partition: 0})
		checkStore(t, db, "s", l.model(0))
		if res.Total != 200 {
			t.Errorf("keep=%v: restored %d, want 200", keep, res.Total)
		}
		if got := checkpointOf(t, db).Changelogs["s"].Offset; got != end {
			t.Errorf("keep=%v: checkpoint %d, want %d", keep, got, end)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.EndTransaction(e.ctx(), kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreRemoveResume removes a task mid-restore (a rebalance) and adds it
// again: progress is kept and the second restore resumes from it.
func TestRestoreRemoveResume(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("remove", "s")
	e.createTopic(topic, 1, nil)
	l := &changelogLog{topic: topic, part: 0}
	e.produce(l, rand.New(rand.NewPCG(19, 20)), 30_000, 5_000)

	lis := newRecListener()
	firstBatch := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	lis.onBatch = func(string, int64, int64) {
		once.Do(func() {
			close(firstBatch)
			<-release // hold the loop until Remove was called
		})
	}
	r := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{Listener: lis, BatchRecords: 1_000})
	runRestorer(t, r)
	sc := StoreChangelog{Store: "s", Topic: topic, Partition: 0}
	db := state.NewMemory()
	began := time.Now()
	resc := add(r, "t", db, sc)
	select {
	case <-firstBatch:
	case <-time.After(testTimeout):
		t.Fatal("no batch restored")
	}
	gone := r.Remove("t")
	close(release)
	select {
	case <-gone:
	case <-time.After(testTimeout):
		t.Fatal("Remove did not finish")
	}
	res := wait(t, resc)
	if !errors.Is(res.Err, ErrSuspended) {
		t.Fatalf("removed task result err = %v", res.Err)
	}
	cp := checkpointOf(t, db)
	off := cp.Changelogs["s"].Offset
	if off < 1_000 || off >= 30_000 {
		t.Fatalf("checkpoint offset after Remove = %d", off)
	}
	// An intermediate checkpoint is dated with the start of the restore.
	if cp.Written.Before(began.Add(-time.Second)) || cp.Written.After(time.Now()) {
		t.Errorf("suspended checkpoint written %v, restore began %v", cp.Written, began)
	}
	if res.Total != off {
		t.Errorf("suspended result counts %d, checkpoint is at %d", res.Total, off)
	}
	// The checkpoint matches the data applied.
	checkStore(t, db, "s", modelUpTo(l, off))
	lis.mu.Lock()
	if lis.suspended["t/s"] != off {
		t.Errorf("OnRestoreSuspended total %d, want %d", lis.suspended["t/s"], off)
	}
	lis.mu.Unlock()

	lis.onBatch = nil
	res = restore(t, r, "t", db, sc)
	if res.Wiped {
		t.Fatalf("resume wiped: %s", res.WipeReason)
	}
	if res.Total != 30_000-off {
		t.Errorf("resumed restore replayed %d, want %d", res.Total, 30_000-off)
	}
	if final := checkpointOf(t, db); !final.Written.After(cp.Written) || final.Changelogs["s"].Offset != 30_000 {
		t.Errorf("final checkpoint %+v, suspended one written %v", final, cp.Written)
	}
	checkStore(t, db, "s", l.model(0))

	// Removing an unknown task returns at once.
	select {
	case <-r.Remove("unknown"):
	case <-time.After(testTimeout):
		t.Fatal("Remove of an unknown task blocked")
	}
}

func modelUpTo(l *changelogLog, end int64) map[string][]byte {
	cut := &changelogLog{}
	for _, r := range l.recs {
		if r.off < end {
			cut.recs = append(cut.recs, r)
		}
	}
	return cut.model(0)
}

// TestRestoreRemoveDuringInit removes a task whose metadata is still loading
// (the broker fails it retriably).
func TestRestoreRemoveDuringInit(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("init", "s")
	e.createTopic(topic, 1, nil)
	h := e.b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.ListOffsets}, Err: kerr.NotLeaderForPartition, Count: -1})
	defer h.Remove()
	r := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{})
	runRestorer(t, r)
	db := state.NewMemory()
	resc := add(r, "t", db, StoreChangelog{Store: "s", Topic: topic, Partition: 0})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := h.Wait(ctx, 2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Remove("t"):
	case <-time.After(testTimeout):
		t.Fatal("Remove blocked")
	}
	if res := wait(t, resc); !errors.Is(res.Err, ErrSuspended) {
		t.Fatalf("err = %v", res.Err)
	}
}

// TestRestoreConcurrentTasks restores two tasks with two stores each at once.
func TestRestoreConcurrentTasks(t *testing.T) {
	e := newEnv(t)
	ta, tb := TopicName("multi", "a"), TopicName("multi", "b")
	e.createTopic(ta, 2, nil)
	e.createTopic(tb, 2, nil)
	rng := rand.New(rand.NewPCG(21, 22))
	logs := map[string]*changelogLog{}
	for _, topic := range []string{ta, tb} {
		for p := range int32(2) {
			l := &changelogLog{topic: topic, part: p}
			e.produce(l, rng, 4_000+int(p)*1_000, 700)
			logs[topic+"/"+string(rune('0'+p))] = l
		}
	}
	lis := newRecListener()
	r := NewRestorer(e.restoreClient(true), e.adm, RestorerOptions{Listener: lis, BatchRecords: 999})
	runRestorer(t, r)
	dbs := []state.DB{state.NewMemory(), state.NewMemory()}
	var chans []<-chan Result
	for p := range int32(2) {
		chans = append(chans, add(r, "task"+string(rune('0'+p)), dbs[p],
			StoreChangelog{Store: "a", Topic: ta, Partition: p},
			StoreChangelog{Store: "b", Topic: tb, Partition: p}))
	}
	for p, ch := range chans {
		res := wait(t, ch)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		checkStore(t, dbs[p], "a", logs[ta+"/"+string(rune('0'+p))].model(0))
		checkStore(t, dbs[p], "b", logs[tb+"/"+string(rune('0'+p))].model(0))
		if want := int64(2 * (4_000 + p*1_000)); res.Total != want {
			t.Errorf("task %d restored %d, want %d", p, res.Total, want)
		}
	}

	// The same changelog partition cannot be restored by two tasks.
	gate := make(chan struct{})
	lis.onBatch = func(string, int64, int64) { <-gate }
	dup1 := add(r, "x", state.NewMemory(), StoreChangelog{Store: "a", Topic: ta, Partition: 0})
	dup2 := add(r, "y", state.NewMemory(), StoreChangelog{Store: "a", Topic: ta, Partition: 0})
	if res := wait(t, dup2); res.Err == nil || !strings.Contains(res.Err.Error(), "being restored by task") {
		t.Errorf("duplicate partition: %v", res.Err)
	}
	close(gate)
	if res := wait(t, dup1); res.Err != nil {
		t.Error(res.Err)
	}
}

// TestRestoreDBError: a DB failure ends the task with that error.
func TestRestoreDBError(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("dberr", "s")
	e.createTopic(topic, 1, nil)
	e.produce(&changelogLog{topic: topic, part: 0}, rand.New(rand.NewPCG(23, 24)), 2_000, 100)
	r := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{BatchRecords: 100})
	runRestorer(t, r)
	db := &faultyDB{DB: state.NewMemory(), err: state.ErrCorrupt}
	res := wait(t, add(r, "t", db, StoreChangelog{Store: "s", Topic: topic, Partition: 0}))
	if !errors.Is(res.Err, state.ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", res.Err)
	}
	// The restorer keeps working for other tasks.
	db2 := state.NewMemory()
	restore(t, r, "t", db2, StoreChangelog{Store: "s", Topic: topic, Partition: 0})
}

// TestRestoreBrokerErrors: retriable errors are retried, authorization
// failures end the task.
func TestRestoreBrokerErrors(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("brokererr", "s")
	e.createTopic(topic, 1, nil)
	l := &changelogLog{topic: topic, part: 0}
	e.produce(l, rand.New(rand.NewPCG(25, 26)), 1_000, 100)
	r := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{})
	runRestorer(t, r)
	sc := StoreChangelog{Store: "s", Topic: topic, Partition: 0}

	h := e.b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.ListOffsets}, Err: kerr.NotLeaderForPartition, Count: 3})
	db := state.NewMemory()
	restore(t, r, "t", db, sc)
	if h.Hits() < 1 {
		t.Error("fault not hit")
	}
	checkStore(t, db, "s", l.model(0))

	h = e.b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Metadata}, Topic: topic, Err: kerr.TopicAuthorizationFailed, Count: -1})
	defer h.Remove()
	res := wait(t, add(r, "t2", state.NewMemory(), sc))
	if !errors.Is(res.Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("err = %v", res.Err)
	}
}

// TestRestoreMissingPartition: a task partition beyond the topic's count.
func TestRestoreMissingPartition(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("missing", "s")
	e.createTopic(topic, 1, nil)
	r := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{})
	runRestorer(t, r)
	res := wait(t, add(r, "t", state.NewMemory(), StoreChangelog{Store: "s", Topic: topic, Partition: 3}))
	if !errors.Is(res.Err, ErrPartitionMismatch) {
		t.Fatalf("err = %v", res.Err)
	}
}

// TestRestoreRunStops: cancelling Run suspends running restores; later Adds
// fail with ErrStopped.
func TestRestoreRunStops(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("stop", "s")
	e.createTopic(topic, 1, nil)
	e.produce(&changelogLog{topic: topic, part: 0}, rand.New(rand.NewPCG(27, 28)), 10_000, 1_000)
	lis := newRecListener()
	started := make(chan struct{})
	var once sync.Once
	lis.onBatch = func(string, int64, int64) { once.Do(func() { close(started) }) }
	r := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{Listener: lis, BatchRecords: 500})
	stop := runRestorer(t, r)
	db := state.NewMemory()
	resc := add(r, "t", db, StoreChangelog{Store: "s", Topic: topic, Partition: 0})
	select {
	case <-started:
	case <-time.After(testTimeout):
		t.Fatal("no progress")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	res := wait(t, resc)
	if res.Err != nil && !errors.Is(res.Err, ErrSuspended) {
		t.Fatalf("err = %v", res.Err)
	}
	if res.Err != nil && checkpointOf(t, db).Changelogs["s"].Offset != res.Total {
		t.Errorf("checkpoint does not match suspended progress %d", res.Total)
	}
	if res := wait(t, add(r, "u", state.NewMemory())); !errors.Is(res.Err, ErrStopped) {
		t.Errorf("add after stop: %v", res.Err)
	}
	select {
	case <-r.Remove("t"):
	default:
		t.Error("Remove after stop blocks")
	}
	if err := r.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
}

func TestRestoreClientChecks(t *testing.T) {
	e := newEnv(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.b.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r := NewRestorer(cl, e.adm, RestorerOptions{})
	queued := add(r, "queued", state.NewMemory())
	if err := r.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "read committed") {
		t.Errorf("read-uncommitted client accepted: %v", err)
	}
	if res := wait(t, queued); !errors.Is(res.Err, ErrStopped) {
		t.Errorf("queued add: %v", res.Err)
	}
	if res := wait(t, add(r, "later", state.NewMemory())); !errors.Is(res.Err, ErrStopped) {
		t.Errorf("later add: %v", res.Err)
	}

	group, err := kgo.NewClient(kgo.SeedBrokers(e.b.Addrs()...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("x"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer group.Close()
	if err := NewRestorer(group, e.adm, RestorerOptions{}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "group") {
		t.Errorf("group client accepted: %v", err)
	}
}

// TestRestoreCompacted restores a compacted log (offset gaps, a moved log
// start in kfake) fully and warm.
func TestRestoreCompacted(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("compacted", "s")
	e.createTopic(topic, 1, nil)
	rng := rand.New(rand.NewPCG(29, 30))
	l := &changelogLog{topic: topic, part: 0}
	for range 10 {
		e.produce(l, rng, 1_000, 300)
	}
	e.b.Cluster().Compact()
	r := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{Logger: testLogger(t), BatchRecords: 100})
	runRestorer(t, r)
	sc := StoreChangelog{Store: "s", Topic: topic, Partition: 0}
	db := state.NewMemory()
	res := restore(t, r, "t", db, sc)
	checkStore(t, db, "s", l.model(0))
	if res.Total >= 10_000 {
		t.Errorf("restored %d records: the log was not compacted", res.Total)
	}
	for range 5 {
		e.produce(l, rng, 1_000, 300)
	}
	e.b.Cluster().Compact()
	restore(t, r, "t", db, sc)
	checkStore(t, db, "s", l.model(0))
}

// TestRestoreTopicRecreatedDuring: the changelog is deleted and recreated
// while a task restores from it; the task starts over on the new topic.
func TestRestoreTopicRecreatedDuring(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("recreate", "s")
	e.createTopic(topic, 1, nil)
	rng := rand.New(rand.NewPCG(31, 32))
	for range 50 { // many small batches, so the client cannot buffer them all
		e.produce(&changelogLog{topic: topic, part: 0}, rng, 100, 2_000)
	}

	lis := newRecListener()
	hold := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	lis.onBatch = func(string, int64, int64) {
		once.Do(func() {
			close(hold)
			<-release
		})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.b.Addrs()...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxBytes(1), kgo.FetchMaxPartitionBytes(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r := NewRestorer(cl, e.adm, RestorerOptions{Listener: lis, BatchRecords: 200, Logger: testLogger(t)})
	runRestorer(t, r)
	db := state.NewMemory()
	resc := add(r, "t", db, StoreChangelog{Store: "s", Topic: topic, Partition: 0})
	select {
	case <-hold:
	case <-time.After(testTimeout):
		t.Fatal("no batch")
	}
	if _, err := e.adm.DeleteTopic(e.ctx(), topic); err != nil {
		t.Fatal(err)
	}
	e.createTopic(topic, 1, nil)
	prod, err := kgo.NewClient(kgo.SeedBrokers(e.b.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	e.prod = prod
	l := &changelogLog{topic: topic, part: 0}
	e.produce(l, rand.New(rand.NewPCG(33, 34)), 3_000, 500)
	close(release)
	res := wait(t, resc)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if !res.Wiped || !strings.Contains(res.WipeReason, "recreated") && !strings.Contains(res.WipeReason, "UNKNOWN_TOPIC_ID") {
		t.Errorf("wiped=%v reason=%q", res.Wiped, res.WipeReason)
	}
	checkStore(t, db, "s", l.model(0))
}

// TestRestoreLogStartMovesDuring: records the restore has not read yet are
// deleted (DeleteRecords) while it runs; the task starts over from the new
// log start with a wiped DB.
func TestRestoreLogStartMovesDuring(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("logstart", "s")
	e.createTopic(topic, 1, nil)
	rng := rand.New(rand.NewPCG(35, 36))
	l := &changelogLog{topic: topic, part: 0}
	for range 40 { // many small batches, so the client cannot buffer them all
		e.produce(l, rng, 100, 3_000)
	}

	lis := newRecListener()
	hold := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	lis.onBatch = func(string, int64, int64) {
		once.Do(func() {
			close(hold)
			<-release
		})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.b.Addrs()...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxBytes(1), kgo.FetchMaxPartitionBytes(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r := NewRestorer(cl, e.adm, RestorerOptions{Listener: lis, BatchRecords: 150, Logger: testLogger(t)})
	runRestorer(t, r)
	db := state.NewMemory()
	resc := add(r, "t", db, StoreChangelog{Store: "s", Topic: topic, Partition: 0})
	select {
	case <-hold:
	case <-time.After(testTimeout):
		t.Fatal("no batch")
	}
	del, err := e.adm.DeleteRecords(e.ctx(), offsetsAt(topic, 0, 3_000))
	if err != nil || del.Error() != nil {
		t.Fatal(err, del.Error())
	}
	close(release)
	res := wait(t, resc)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if !res.Wiped || !strings.Contains(res.WipeReason, "log start offset") {
		t.Errorf("wiped=%v reason=%q", res.Wiped, res.WipeReason)
	}
	checkStore(t, db, "s", l.model(3_000))
}

// fetchCounter counts the changelog records a client fetched from the broker,
// including records fetched but dropped before a poll returned them.
type fetchCounter struct{ n atomic.Int64 }

func (c *fetchCounter) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	c.n.Add(int64(m.NumRecords))
}

// TestRestoreFetchesEachRecordOnce restores six tasks at once, as an App
// does after a cold start, and checks that every changelog record is fetched
// from the broker once: a partition that finishes first must not make the
// client throw away (and fetch again) what it buffered for the others.
func TestRestoreFetchesEachRecordOnce(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("once", "s")
	const parts = 6
	e.createTopic(topic, parts, nil)
	rng := rand.New(rand.NewPCG(31, 32))
	logs := make([]*changelogLog, parts)
	var produced int64
	for p := range int32(parts) {
		logs[p] = &changelogLog{topic: topic, part: p}
		n := 6_000 + int(p)*2_000 // partitions finish at different times
		e.produce(logs[p], rng, n, 3_000)
		produced += int64(n)
	}
	var fc fetchCounter
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(e.b.Addrs()...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(200*time.Millisecond),
		// Small fetches: each partition takes many, so partitions
		// finish while the client holds buffered data of the others.
		kgo.FetchMaxPartitionBytes(16<<10),
		kgo.WithHooks(&fc),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	r := NewRestorer(cl, e.adm, RestorerOptions{BatchRecords: 500, BulkLoadRecords: 1})
	runRestorer(t, r)
	// Pebble DBs, so the restores run in bulk load mode as in an App.
	env := state.NewEnv(state.EnvOptions{Logger: testLogger(t)})
	t.Cleanup(func() { env.Close() })
	dbs := make([]state.DB, parts)
	var chans []<-chan Result
	for p := range int32(parts) {
		if dbs[p], err = env.Open(filepath.Join(t.TempDir(), fmt.Sprint(p))); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dbs[p].Close() })
		chans = append(chans, add(r, fmt.Sprintf("task%d", p), dbs[p], StoreChangelog{Store: "s", Topic: topic, Partition: p}))
	}
	var restored int64
	for p, ch := range chans {
		res := wait(t, ch)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		checkStore(t, dbs[p], "s", logs[p].model(0))
		restored += res.Total
	}
	if restored != produced {
		t.Errorf("restored %d records, want %d", restored, produced)
	}
	if got := fc.n.Load(); got != produced {
		t.Errorf("fetched %d changelog records to restore %d: want each fetched once", got, produced)
	}
}

// bulkSpy is a DB that records its bulk load mode.
type bulkSpy struct {
	state.DB
	mu      sync.Mutex
	bulk    bool
	begins  int
	inBulk  int // Applies in bulk load mode
	outBulk int // Applies in normal mode
	// onEnd, if set, runs first in EndBulkLoad and returns its error.
	onEnd func() error
}

func (d *bulkSpy) BeginBulkLoad() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.bulk {
		d.begins++
	}
	d.bulk = true
	return nil
}

func (d *bulkSpy) EndBulkLoad() error {
	var err error
	if d.onEnd != nil {
		err = d.onEnd()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.bulk = false
	return err
}

func (d *bulkSpy) Apply(w *state.WriteSet, cp *state.Checkpoint, sync bool) error {
	d.mu.Lock()
	if d.bulk {
		d.inBulk++
	} else {
		d.outBulk++
	}
	d.mu.Unlock()
	return d.DB.Apply(w, cp, sync)
}

func (d *bulkSpy) snapshot() (bulk bool, begins, inBulk, outBulk int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bulk, d.begins, d.inBulk, d.outBulk
}

// TestRestoreBulkLoad: a restore into a wiped DB runs in bulk load mode,
// which ends before Done whether the restore completes or is suspended; a
// restore resumed from a checkpoint does not use it.
func TestRestoreBulkLoad(t *testing.T) {
	e := newEnv(t)
	topic := TopicName("bulk", "s")
	e.createTopic(topic, 1, nil)
	l := &changelogLog{topic: topic, part: 0}
	e.produce(l, rand.New(rand.NewPCG(41, 42)), 20_000, 4_000)

	lis := newRecListener()
	firstBatch := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	lis.onBatch = func(string, int64, int64) {
		once.Do(func() {
			close(firstBatch)
			<-release
		})
	}
	r := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{Listener: lis, BatchRecords: 1_000, BulkLoadRecords: 20_000})
	runRestorer(t, r)
	sc := StoreChangelog{Store: "s", Topic: topic, Partition: 0}
	db := &bulkSpy{DB: state.NewMemory()}

	// Suspended mid-way: the mode ends with it.
	resc := add(r, "t", db, sc)
	select {
	case <-firstBatch:
	case <-time.After(testTimeout):
		t.Fatal("no batch restored")
	}
	if bulk, _, _, _ := db.snapshot(); !bulk {
		t.Error("a restore from the log start is not in bulk load mode")
	}
	gone := r.Remove("t")
	close(release)
	<-gone
	if res := wait(t, resc); !errors.Is(res.Err, ErrSuspended) {
		t.Fatalf("err = %v", res.Err)
	}
	if bulk, begins, inBulk, _ := db.snapshot(); bulk || begins != 1 || inBulk == 0 {
		t.Fatalf("after suspend: bulk=%v begins=%d applies in bulk=%d", bulk, begins, inBulk)
	}

	// Resumed from the checkpoint: no bulk load mode.
	lis.onBatch = nil
	_, _, inBefore, outBefore := db.snapshot()
	res := restore(t, r, "t", db, sc)
	if res.Wiped {
		t.Fatalf("resume wiped: %s", res.WipeReason)
	}
	bulk, begins, inBulk, outBulk := db.snapshot()
	if bulk || begins != 1 || inBulk != inBefore || outBulk == outBefore {
		t.Errorf("resume: bulk=%v begins=%d applies in bulk %d→%d, in normal mode %d→%d", bulk, begins, inBefore, inBulk, outBefore, outBulk)
	}
	checkStore(t, db, "s", l.model(0))

	// A cold restore to the end: bulk load mode from the wipe to Done.
	// OnRestoreEnd comes once the load ended: the records are in the DB.
	cold := &bulkSpy{DB: state.NewMemory()}
	endInBulk := make(chan bool, 1)
	lis.onEnd = func(store string, _ int64) {
		if store == "cold/s" {
			bulk, _, _, _ := cold.snapshot()
			endInBulk <- bulk
		}
	}
	ch := make(chan Result, 1)
	r.Add(Request{Task: "cold", DB: cold, Stores: []StoreChangelog{sc}, Done: func(res Result) {
		if bulk, _, _, _ := cold.snapshot(); bulk {
			t.Error("Done called in bulk load mode")
		}
		ch <- res
	}})
	if res := wait(t, ch); res.Err != nil || !res.Wiped {
		t.Fatalf("cold restore: err=%v wiped=%v", res.Err, res.Wiped)
	}
	select {
	case bulk := <-endInBulk:
		if bulk {
			t.Error("OnRestoreEnd called while the DB was still in bulk load mode")
		}
	default:
		t.Error("no OnRestoreEnd for the cold restore")
	}
	if _, begins, inBulk, _ := cold.snapshot(); begins != 1 || inBulk == 0 {
		t.Errorf("cold restore: begins=%d applies in bulk=%d", begins, inBulk)
	}
	checkStore(t, cold, "s", l.model(0))

	// Below BulkLoadRecords, a cold restore stays in normal mode.
	small := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{BulkLoadRecords: 20_001})
	runRestorer(t, small)
	plain := &bulkSpy{DB: state.NewMemory()}
	if res := restore(t, small, "plain", plain, sc); !res.Wiped {
		t.Fatal("restore into an empty DB did not wipe")
	}
	if _, begins, inBulk, _ := plain.snapshot(); begins != 0 || inBulk != 0 {
		t.Errorf("20,000 records below BulkLoadRecords: begins=%d applies in bulk=%d", begins, inBulk)
	}
	checkStore(t, plain, "s", l.model(0))
}

// TestRestoreBulkEndInBackground: a task whose stores reached their end
// leaves bulk load mode in the background. Meanwhile other tasks restore
// and complete; a Remove waits for it and Done reports success; an error of
// EndBulkLoad fails the task.
func TestRestoreBulkEndInBackground(t *testing.T) {
	e := newEnv(t)
	var scs []StoreChangelog
	var logs []*changelogLog
	for i, name := range []string{"a", "b", "c"} {
		topic := TopicName("bulkend", name)
		e.createTopic(topic, 1, nil)
		l := &changelogLog{topic: topic, part: 0}
		e.produce(l, rand.New(rand.NewPCG(51, uint64(i))), 3_000, 500)
		logs = append(logs, l)
		scs = append(scs, StoreChangelog{Store: "s", Topic: topic, Partition: 0})
	}
	r := NewRestorer(e.restoreClient(false), e.adm, RestorerOptions{BatchRecords: 500, BulkLoadRecords: 1})
	runRestorer(t, r)

	entered, release := make(chan struct{}), make(chan struct{})
	a := &bulkSpy{DB: state.NewMemory(), onEnd: func() error {
		close(entered)
		<-release
		return nil
	}}
	resA := add(r, "a", a, scs[0])
	select {
	case <-entered:
	case <-time.After(testTimeout):
		t.Fatal("task a did not leave bulk load mode")
	}
	select {
	case res := <-resA:
		t.Fatalf("Done before EndBulkLoad returned: %+v", res)
	default:
	}

	// Another task restores to its end while a's EndBulkLoad blocks.
	b := &bulkSpy{DB: state.NewMemory()}
	if res := restore(t, r, "b", b, scs[1]); res.Err != nil || !res.Wiped {
		t.Fatalf("task b: err=%v wiped=%v", res.Err, res.Wiped)
	}
	checkStore(t, b, "s", logs[1].model(0))

	// Remove waits for the end of a, which completed its restore.
	gone := r.Remove("a")
	select {
	case <-gone:
		t.Fatal("Remove returned while EndBulkLoad runs")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-gone:
	case <-time.After(testTimeout):
		t.Fatal("Remove did not return")
	}
	if res := wait(t, resA); res.Err != nil || res.Total == 0 {
		t.Fatalf("task a: err=%v total=%d", res.Err, res.Total)
	}
	if bulk, _, _, _ := a.snapshot(); bulk {
		t.Fatal("task a still in bulk load mode")
	}
	checkStore(t, a, "s", logs[0].model(0))

	// A failed EndBulkLoad fails the task.
	boom := errors.New("boom")
	c := &bulkSpy{DB: state.NewMemory(), onEnd: func() error { return boom }}
	if res := wait(t, add(r, "c", c, scs[2])); !errors.Is(res.Err, boom) {
		t.Fatalf("task c: err=%v, want %v", res.Err, boom)
	}
}
