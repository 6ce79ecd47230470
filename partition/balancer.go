package partition

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultProtocolName is the group protocol name of the task balancer when
// BalancerConfig.ProtocolName is empty.
const DefaultProtocolName = "choreo-task-v1"

// BalancerConfig configures a task Balancer.
type BalancerConfig struct {
	// Subtopologies lists the source topics of each sub-topology; the index
	// is the sub-topology id. Task (s, p) owns partition p of every topic
	// of Subtopologies[s]. A topic should appear in one sub-topology only;
	// later occurrences are ignored.
	Subtopologies [][]string

	// UserData returns opaque bytes this member advertises to the group,
	// e.g. the host:port of its interactive-query endpoint. Every member
	// receives every member's UserData in the AssignmentInfo. It should
	// return the same bytes on every call: a change makes the coordinator
	// see new metadata. Optional.
	UserData func() []byte

	// ProtocolName is the group protocol name; DefaultProtocolName if
	// empty. All members of a group must use the same name.
	ProtocolName string

	// OnAssignment, if set, is called with the group's new AssignmentInfo
	// after each successful SyncGroup, before franz-go revokes or assigns
	// partitions. It runs on the client's group management goroutine and
	// must not block.
	OnAssignment func(*AssignmentInfo)
}

// Balancer is a cooperative kgo.GroupBalancer that assigns tasks rather
// than partitions: all partitions of one task (partition p of every source
// topic of a sub-topology) go to the same member. Pass it to a client with
// kgo.Balancers; use one Balancer per client, since it remembers the
// client's latest assignment (LastAssignment).
//
// The leader keeps tasks on their current owners where it can, spreads each
// sub-topology's tasks and the total task count evenly (a difference of at
// most one between members, when every member can run every task), and
// moves as few tasks as possible. Moved partitions are first revoked from
// their old owner and handed to the new owner in the rebalance that
// follows, as cooperative-sticky does (KIP-429).
type Balancer struct {
	subs     [][]string
	userData func() []byte
	proto    string
	onAssign func(*AssignmentInfo)
	last     atomic.Pointer[AssignmentInfo]
}

var _ kgo.GroupBalancer = (*Balancer)(nil)

// NewBalancer returns a task balancer for cfg.
func NewBalancer(cfg BalancerConfig) *Balancer {
	b := &Balancer{
		userData: cfg.UserData,
		proto:    cfg.ProtocolName,
		onAssign: cfg.OnAssignment,
	}
	if b.proto == "" {
		b.proto = DefaultProtocolName
	}
	seen := make(map[string]bool)
	for _, topics := range cfg.Subtopologies {
		var own []string
		for _, t := range topics {
			if !seen[t] {
				seen[t] = true
				own = append(own, t)
			}
		}
		b.subs = append(b.subs, own)
	}
	return b
}

// ProtocolName implements kgo.GroupBalancer.
func (b *Balancer) ProtocolName() string { return b.proto }

// IsCooperative implements kgo.GroupBalancer; the task balancer is
// cooperative.
func (*Balancer) IsCooperative() bool { return true }

// memberDataVersion is the first byte of the UserData of this balancer's
// ConsumerMemberMetadata. Later versions may append fields after the
// application's bytes; decoders ignore them.
const memberDataVersion = 1

// JoinGroupMetadata implements kgo.GroupBalancer. It encodes a
// kmsg.ConsumerMemberMetadata (version 3) with the topic interests, the
// currently owned partitions (OwnedPartitions, as the cooperative-sticky
// balancer does), the generation, and in UserData a version byte followed by
// the length-prefixed bytes of BalancerConfig.UserData.
func (b *Balancer) JoinGroupMetadata(interests []string, currentAssignment map[string][]int32, generation int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 3
	meta.Topics = interests
	meta.Generation = generation
	for topic, partitions := range currentAssignment {
		owned := kmsg.NewConsumerMemberMetadataOwnedPartition()
		owned.Topic = topic
		owned.Partitions = slices.Sorted(slices.Values(partitions))
		meta.OwnedPartitions = append(meta.OwnedPartitions, owned)
	}
	slices.SortFunc(meta.OwnedPartitions, func(x, y kmsg.ConsumerMemberMetadataOwnedPartition) int {
		return cmp.Compare(x.Topic, y.Topic)
	})
	var ud []byte
	if b.userData != nil {
		ud = b.userData()
	}
	meta.UserData = encodeMemberData(ud)
	return meta.AppendTo(nil)
}

func encodeMemberData(ud []byte) []byte {
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(ud))
	out = append(out, memberDataVersion)
	out = binary.AppendUvarint(out, uint64(len(ud)))
	return append(out, ud...)
}

// decodeMemberData returns the application bytes of a member's metadata
// UserData, or nil if the member did not encode any in a known format.
func decodeMemberData(b []byte) []byte {
	if len(b) == 0 || b[0] != memberDataVersion {
		return nil
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) || n == 0 {
		return nil
	}
	return b[1+k : 1+k+int(n)]
}

// ParseSyncAssignment implements kgo.GroupBalancer: it returns the
// partitions assigned to this member, and records the group-wide
// AssignmentInfo carried in the assignment's UserData (see LastAssignment
// and BalancerConfig.OnAssignment).
func (b *Balancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	if len(assignment) == 0 { // the leader skipped assignment: nothing for us
		b.last.Store(nil)
		return map[string][]int32{}, nil
	}
	assigned, ud, err := parseAssignment(assignment)
	if err != nil {
		return nil, err
	}
	info, err := decodeInfo(ud)
	if err != nil {
		return nil, err
	}
	b.last.Store(info)
	if b.onAssign != nil {
		b.onAssign(info)
	}
	return assigned, nil
}

func parseAssignment(assignment []byte) (map[string][]int32, []byte, error) {
	var ka kmsg.ConsumerMemberAssignment
	if err := ka.ReadFrom(assignment); err != nil {
		return nil, nil, fmt.Errorf("partition: sync assignment parse failed: %w", err)
	}
	m := make(map[string][]int32, len(ka.Topics))
	for _, t := range ka.Topics {
		m[t.Topic] = append(m[t.Topic], t.Partitions...)
	}
	return m, ka.UserData, nil
}

// LastAssignment returns the group-wide assignment received in the latest
// successful SyncGroup, or nil before the first one. It is safe for
// concurrent use; the returned value must not be modified.
func (b *Balancer) LastAssignment() *AssignmentInfo {
	return b.last.Load()
}

// MemberBalancer implements kgo.GroupBalancer. It parses each member's
// metadata as a kmsg.ConsumerMemberMetadata and returns the topics all
// members consume.
func (b *Balancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	cb, err := kgo.NewConsumerBalancer(taskBalance{b}, members)
	if err != nil {
		return nil, nil, err
	}
	return cb, cb.MemberTopics(), nil
}

// hint returns the owner (member ID) that the last plan this member
// received chose for partition p of the sub-topology with the given topics,
// or nil if there is no plan yet. The leader uses it to place tasks that
// nobody owns: after a cooperative revocation, exactly the tasks the
// previous plan moved, which then land where that plan put them.
func (b *Balancer) hint() func(sub []string, partition int32) string {
	info := b.last.Load()
	if info == nil {
		return nil
	}
	owners := make(map[TaskID]string, len(info.Owners))
	for _, m := range info.Members {
		for _, t := range m.Tasks {
			owners[t] = m.MemberID
		}
	}
	return func(sub []string, p int32) string {
		for s, topics := range info.Subtopologies {
			if slices.Equal(topics, sub) {
				return owners[TaskID{Subtopology: s, Partition: p}]
			}
		}
		return ""
	}
}

// taskBalance is the kgo.ConsumerBalancerBalance of a Balancer.
type taskBalance struct{ b *Balancer }

// Balance computes the task plan, withholds moving partitions for the
// cooperative protocol and attaches the AssignmentInfo to every member.
func (tb taskBalance) Balance(cb *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	var members []memberMeta
	cb.EachMember(func(m *kmsg.JoinGroupResponseMember, meta *kmsg.ConsumerMemberMetadata) {
		mm := memberMeta{
			id:         m.MemberID,
			join:       m,
			topics:     make(map[string]bool, len(meta.Topics)),
			owned:      make(map[string][]int32, len(meta.OwnedPartitions)),
			generation: meta.Generation,
			userData:   decodeMemberData(meta.UserData),
		}
		if m.InstanceID != nil {
			mm.instance = *m.InstanceID
			mm.static = true
		}
		for _, t := range meta.Topics {
			mm.topics[t] = true
		}
		for _, o := range meta.OwnedPartitions {
			mm.owned[o.Topic] = append(mm.owned[o.Topic], o.Partitions...)
		}
		members = append(members, mm)
	})
	sortMembers(members)

	res := assign(tb.b.subs, topics, members, tb.b.hint())

	plan := cb.NewPlan()
	for mi, tasks := range res.tasks {
		m := &members[mi]
		for _, t := range tasks {
			for _, topic := range res.subs[t.Subtopology] {
				if m.topics[topic] && t.Partition < topics[topic] {
					plan.AddPartition(m.join, topic, t.Partition)
				}
			}
		}
	}
	plan.AdjustCooperative(cb)

	info := encodeInfo(cb.Info().Generation, res.subs, res.nparts, members, res.owner)
	return &syncPlan{plan: plan, info: info}
}

// syncPlan is a balance plan whose member assignments all carry the encoded
// AssignmentInfo in their UserData.
type syncPlan struct {
	plan *kgo.BalancePlan
	info []byte
}

// IntoSyncAssignment implements kgo.IntoSyncAssignment, sorted by member,
// topic and partition.
func (p *syncPlan) IntoSyncAssignment() []kmsg.SyncGroupRequestGroupAssignment {
	plan := p.plan.AsMemberIDMap()
	ids := make([]string, 0, len(plan))
	for id := range plan {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]kmsg.SyncGroupRequestGroupAssignment, 0, len(ids))
	for _, id := range ids {
		var ka kmsg.ConsumerMemberAssignment
		topics := make([]string, 0, len(plan[id]))
		for t := range plan[id] {
			topics = append(topics, t)
		}
		slices.Sort(topics)
		for _, t := range topics {
			at := kmsg.NewConsumerMemberAssignmentTopic()
			at.Topic = t
			at.Partitions = slices.Sorted(slices.Values(plan[id][t]))
			ka.Topics = append(ka.Topics, at)
		}
		ka.UserData = p.info
		sa := kmsg.NewSyncGroupRequestGroupAssignment()
		sa.MemberID = id
		sa.MemberAssignment = ka.AppendTo(nil)
		out = append(out, sa)
	}
	return out
}

// String describes the plan for franz-go's logs.
func (p *syncPlan) String() string { return p.plan.String() }
