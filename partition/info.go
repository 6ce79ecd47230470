package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// AssignmentInfo is the whole group's task assignment as the group leader
// planned it in one rebalance. The leader's Balancer puts it, encoded, in the
// UserData of every member's SyncGroup assignment, so each member learns who
// owns every task (e.g. to find which instance owns key K for an interactive
// query). Read it with Balancer.LastAssignment or DecodeAssignmentInfo.
//
// Ownership is the leader's target: when a task moves between members with
// cooperative rebalancing, it is listed under its new owner while the old
// owner still revokes it; the rebalance that follows immediately hands it
// over.
type AssignmentInfo struct {
	// Generation is the group generation the assignment belongs to (0 when
	// the leader did not know it).
	Generation int32
	// Subtopologies are the source topics of each sub-topology as the
	// leader balanced them: the leader's configured sub-topologies,
	// followed by one single-topic sub-topology for each topic that a
	// member consumes but that no configured sub-topology lists (sorted by
	// name).
	Subtopologies [][]string
	// Partitions is the number of tasks of each sub-topology (the largest
	// partition count of its topics), parallel to Subtopologies.
	Partitions []int32
	// Members are the group's members, in the leader's order (by instance
	// ID, then member ID), each with its planned tasks.
	Members []MemberInfo
	// Owners maps every assigned task to its owner's UserData (the bytes
	// its BalancerConfig.UserData returned). Tasks no member can own are
	// absent.
	Owners map[TaskID][]byte
}

// MemberInfo describes one member of the group in an AssignmentInfo.
type MemberInfo struct {
	// MemberID is the group member ID the coordinator assigned.
	MemberID string
	// InstanceID is the static group instance ID, or "" if none.
	InstanceID string
	// UserData is what the member's BalancerConfig.UserData returned when
	// it joined (e.g. its host:port).
	UserData []byte
	// Tasks are the tasks planned for the member, sorted.
	Tasks []TaskID
}

// TaskOf returns the task that owns partition of topic, if topic is a
// source topic of one of the sub-topologies and the partition is in range.
func (a *AssignmentInfo) TaskOf(topic string, partition int32) (TaskID, bool) {
	for s, topics := range a.Subtopologies {
		if slices.Contains(topics, topic) {
			if partition < 0 || s >= len(a.Partitions) || partition >= a.Partitions[s] {
				return TaskID{}, false
			}
			return TaskID{Subtopology: s, Partition: partition}, true
		}
	}
	return TaskID{}, false
}

// OwnerOf returns the UserData of the member that owns partition of topic,
// e.g. the partition ForKey computes for a key of that topic.
func (a *AssignmentInfo) OwnerOf(topic string, partition int32) ([]byte, bool) {
	t, ok := a.TaskOf(topic, partition)
	if !ok {
		return nil, false
	}
	ud, ok := a.Owners[t]
	return ud, ok
}

// Owner returns the member that owns task t.
func (a *AssignmentInfo) Owner(t TaskID) (MemberInfo, bool) {
	for _, m := range a.Members {
		if _, found := slices.BinarySearchFunc(m.Tasks, t, Compare); found {
			return m, true
		}
	}
	return MemberInfo{}, false
}

// infoVersion is the first byte of an encoded AssignmentInfo. Later versions
// may append fields; decoders ignore trailing bytes.
const infoVersion = 1

// encodeInfo encodes the assignment compactly: a header with the
// sub-topologies and the members, then one owner index per task.
//
//	version byte
//	generation varint
//	nsub uvarint, per sub-topology: ntopics uvarint, topics (string), tasks uvarint
//	nmembers uvarint, per member: member id, instance id (string), user data (bytes)
//	per sub-topology, per task: owner uvarint (member index + 1, 0 = none)
//
// where string and bytes are a uvarint length and the bytes.
func encodeInfo(generation int32, subs [][]string, nparts []int32, members []memberMeta, owner []int) []byte {
	size := 16 + len(owner)
	for _, s := range subs {
		for _, t := range s {
			size += len(t) + 2
		}
	}
	for i := range members {
		size += len(members[i].id) + len(members[i].instance) + len(members[i].userData) + 6
	}
	b := make([]byte, 0, size)
	b = append(b, infoVersion)
	b = binary.AppendVarint(b, int64(generation))
	b = binary.AppendUvarint(b, uint64(len(subs)))
	for s, topics := range subs {
		b = binary.AppendUvarint(b, uint64(len(topics)))
		for _, t := range topics {
			b = appendString(b, t)
		}
		b = binary.AppendUvarint(b, uint64(nparts[s]))
	}
	b = binary.AppendUvarint(b, uint64(len(members)))
	for i := range members {
		b = appendString(b, members[i].id)
		b = appendString(b, members[i].instance)
		b = appendString(b, string(members[i].userData))
	}
	for _, o := range owner {
		b = binary.AppendUvarint(b, uint64(o+1))
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errShortInfo = errors.New("partition: assignment info truncated")

type infoReader struct {
	b   []byte
	err error
}

func (r *infoReader) uvarint(max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShortInfo
		return 0
	}
	if v > max {
		r.err = fmt.Errorf("partition: assignment info: value %d out of range", v)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *infoReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShortInfo
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a length that cannot exceed the remaining bytes (each element
// takes at least one byte), so corrupt input cannot force huge allocations.
func (r *infoReader) count() int {
	return int(r.uvarint(uint64(len(r.b))))
}

func (r *infoReader) bytes() []byte {
	n := r.count()
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = errShortInfo
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// DecodeAssignmentInfo decodes the AssignmentInfo that a choreo task
// balancer leader put in a member's assignment. assignment is either the
// whole SyncGroup member assignment (a kmsg.ConsumerMemberAssignment, as
// Balancer.ParseSyncAssignment receives it) or just its UserData; the
// function tells them apart by their first byte.
func DecodeAssignmentInfo(assignment []byte) (*AssignmentInfo, error) {
	if len(assignment) >= 2 && assignment[0] == 0 { // int16 version of a ConsumerMemberAssignment
		_, ud, err := parseAssignment(assignment)
		if err != nil {
			return nil, err
		}
		assignment = ud
	}
	return decodeInfo(assignment)
}

func decodeInfo(b []byte) (*AssignmentInfo, error) {
	if len(b) == 0 {
		return nil, errors.New("partition: no assignment info (the leader is not a choreo task balancer)")
	}
	if b[0] != infoVersion {
		return nil, fmt.Errorf("partition: unsupported assignment info version %d", b[0])
	}
	r := &infoReader{b: b[1:]}
	gen := r.varint()
	if gen < math.MinInt32 || gen > math.MaxInt32 {
		return nil, fmt.Errorf("partition: assignment info: generation %d out of range", gen)
	}
	info := &AssignmentInfo{Generation: int32(gen), Owners: make(map[TaskID][]byte)}
	nsub := r.count()
	var ntasks uint64
	for s := 0; s < nsub && r.err == nil; s++ {
		nt := r.count()
		topics := make([]string, 0, nt)
		for range nt {
			topics = append(topics, string(r.bytes()))
		}
		np := r.uvarint(math.MaxInt32)
		info.Subtopologies = append(info.Subtopologies, topics)
		info.Partitions = append(info.Partitions, int32(np))
		ntasks += np
	}
	nm := r.count()
	for i := 0; i < nm && r.err == nil; i++ {
		var m MemberInfo
		m.MemberID = string(r.bytes())
		m.InstanceID = string(r.bytes())
		if ud := r.bytes(); len(ud) > 0 {
			m.UserData = slices.Clone(ud)
		}
		info.Members = append(info.Members, m)
	}
	if r.err == nil && ntasks > uint64(len(r.b)) {
		r.err = errShortInfo
	}
	for s := 0; s < len(info.Partitions) && r.err == nil; s++ {
		for p := int32(0); p < info.Partitions[s] && r.err == nil; p++ {
			o := r.uvarint(uint64(len(info.Members)))
			if o == 0 || r.err != nil {
				continue
			}
			m := &info.Members[o-1]
			t := TaskID{Subtopology: s, Partition: p}
			m.Tasks = append(m.Tasks, t)
			info.Owners[t] = m.UserData
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return info, nil
}
