package partition

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// TaskID identifies a task: one partition of one sub-topology. The task owns
// partition Partition of every source topic of sub-topology Subtopology.
type TaskID struct {
	// Subtopology is the index of the sub-topology in the topology.
	Subtopology int
	// Partition is the partition number shared by the task's source topics.
	Partition int32
}

// String formats the task as Kafka Streams does: "<subtopology>_<partition>",
// e.g. "0_3".
func (t TaskID) String() string {
	return strconv.Itoa(t.Subtopology) + "_" + strconv.FormatInt(int64(t.Partition), 10)
}

// MarshalText implements encoding.TextMarshaler using the String format, so
// a TaskID can be a JSON map key.
func (t TaskID) MarshalText() ([]byte, error) {
	return []byte(t.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler, accepting what
// ParseTaskID accepts.
func (t *TaskID) UnmarshalText(text []byte) error {
	id, err := ParseTaskID(string(text))
	if err != nil {
		return err
	}
	*t = id
	return nil
}

// ParseTaskID parses the "<subtopology>_<partition>" form produced by
// TaskID.String. Both numbers must be non-negative decimal integers.
func ParseTaskID(s string) (TaskID, error) {
	sub, part, ok := strings.Cut(s, "_")
	if !ok {
		return TaskID{}, fmt.Errorf("partition: invalid task id %q: want <subtopology>_<partition>", s)
	}
	st, err := strconv.ParseUint(sub, 10, 31)
	if err != nil {
		return TaskID{}, fmt.Errorf("partition: invalid task id %q: bad sub-topology", s)
	}
	p, err := strconv.ParseUint(part, 10, 31)
	if err != nil {
		return TaskID{}, fmt.Errorf("partition: invalid task id %q: bad partition", s)
	}
	return TaskID{Subtopology: int(st), Partition: int32(p)}, nil
}

// Compare orders tasks by sub-topology, then partition. It returns -1, 0 or
// +1 and can be passed to slices.SortFunc.
func Compare(a, b TaskID) int {
	if c := cmp.Compare(a.Subtopology, b.Subtopology); c != 0 {
		return c
	}
	return cmp.Compare(a.Partition, b.Partition)
}

// TasksFor returns, sorted, the tasks that own any of the assigned
// partitions (topic → partitions, as franz-go passes to OnPartitionsAssigned
// and OnPartitionsRevoked), given the source topics of each sub-topology.
// Partitions of topics in no sub-topology are ignored.
func TasksFor(subtopologies [][]string, assigned map[string][]int32) []TaskID {
	seen := make(map[TaskID]struct{})
	for s, topics := range subtopologies {
		for _, t := range topics {
			for _, p := range assigned[t] {
				seen[TaskID{Subtopology: s, Partition: p}] = struct{}{}
			}
		}
	}
	out := make([]TaskID, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	slices.SortFunc(out, Compare)
	return out
}
