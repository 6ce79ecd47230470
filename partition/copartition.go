package partition

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNotCopartitioned is wrapped by CheckCopartitioned's error when topics
// that must be co-partitioned have different partition counts.
var ErrNotCopartitioned = errors.New("partition: topics not co-partitioned")

// ErrUnknownTopic is wrapped by CheckCopartitioned's error when a topic has
// no known partition count (it does not exist, or its metadata is missing).
var ErrUnknownTopic = errors.New("partition: unknown topic")

// CheckCopartitioned checks that the topics of each group (typically the
// source topics of one sub-topology, or the two sides of a join) have the
// same number of partitions, as given by partitions (topic → count).
//
// For a group with differing counts the error wraps ErrNotCopartitioned and
// names every topic of the group with its count, in group order:
//
//	partition: topics not co-partitioned: order-lines=6, products=3
//
// A topic missing from partitions yields an error wrapping ErrUnknownTopic
// that names it. Every offending group is reported (joined with
// errors.Join); errors.Is works on the result. Nil means all groups are
// co-partitioned.
func CheckCopartitioned(groups [][]string, partitions map[string]int32) error {
	var errs []error
	for _, group := range groups {
		var unknown []string
		for _, t := range group {
			if _, ok := partitions[t]; !ok {
				unknown = append(unknown, t)
			}
		}
		if len(unknown) > 0 {
			errs = append(errs, fmt.Errorf("%w: %s", ErrUnknownTopic, strings.Join(unknown, ", ")))
			continue
		}
		same := true
		for _, t := range group[min(1, len(group)):] {
			if partitions[t] != partitions[group[0]] {
				same = false
				break
			}
		}
		if same {
			continue
		}
		var sb strings.Builder
		for i, t := range group {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(t)
			sb.WriteByte('=')
			sb.WriteString(strconv.FormatInt(int64(partitions[t]), 10))
		}
		errs = append(errs, fmt.Errorf("%w: %s", ErrNotCopartitioned, sb.String()))
	}
	return errors.Join(errs...)
}
