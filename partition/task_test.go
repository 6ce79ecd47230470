package partition

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

func TestTaskIDString(t *testing.T) {
	if got := (TaskID{Subtopology: 0, Partition: 3}).String(); got != "0_3" {
		t.Fatalf("String = %q", got)
	}
	if got := (TaskID{Subtopology: 12, Partition: 105}).String(); got != "12_105" {
		t.Fatalf("String = %q", got)
	}
}

func TestParseTaskID(t *testing.T) {
	for _, s := range []string{"0_0", "0_3", "12_105", "3_2147483647"} {
		id, err := ParseTaskID(s)
		if err != nil {
			t.Fatalf("ParseTaskID(%q): %v", s, err)
		}
		if id.String() != s {
			t.Fatalf("ParseTaskID(%q) = %v", s, id)
		}
	}
	for _, s := range []string{"", "_", "0_", "_1", "0", "a_1", "1_b", "-1_2", "1_-2", "+1_2", "1_+2", "1_2_3", "1 _2", "0_2147483648", "0x1_2", "1_0x2"} {
		if id, err := ParseTaskID(s); err == nil {
			t.Errorf("ParseTaskID(%q) = %v, want error", s, id)
		}
	}
}

func TestCompareAndText(t *testing.T) {
	ids := []TaskID{{1, 0}, {0, 10}, {0, 2}, {1, 1}, {0, 2}}
	slices.SortFunc(ids, Compare)
	want := []TaskID{{0, 2}, {0, 2}, {0, 10}, {1, 0}, {1, 1}}
	if !slices.Equal(ids, want) {
		t.Fatalf("sorted = %v", ids)
	}
	m := map[TaskID]int{{0, 1}: 1, {2, 3}: 2}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"0_1":1,"2_3":2}` {
		t.Fatalf("json = %s", b)
	}
	var back map[TaskID]int
	if err := json.Unmarshal(b, &back); err != nil || len(back) != 2 || back[TaskID{2, 3}] != 2 {
		t.Fatalf("unmarshal = %v, %v", back, err)
	}
	var id TaskID
	if err := id.UnmarshalText([]byte("x")); err == nil {
		t.Fatal("UnmarshalText accepted garbage")
	}
}

func TestTasksFor(t *testing.T) {
	subs := [][]string{{"a", "b"}, {"c"}}
	got := TasksFor(subs, map[string][]int32{"a": {2, 0}, "b": {0, 5}, "c": {1}, "z": {9}})
	want := []TaskID{{0, 0}, {0, 2}, {0, 5}, {1, 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("TasksFor = %v, want %v", got, want)
	}
}

func TestCheckCopartitioned(t *testing.T) {
	parts := map[string]int32{"order-lines": 6, "products": 3, "orders": 6, "x": 6}
	if err := CheckCopartitioned([][]string{{"order-lines", "orders", "x"}, {"products"}, {}}, parts); err != nil {
		t.Fatalf("co-partitioned groups: %v", err)
	}
	err := CheckCopartitioned([][]string{{"order-lines", "orders"}, {"order-lines", "products"}}, parts)
	if !errors.Is(err, ErrNotCopartitioned) || errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("err = %v", err)
	}
	if got, want := err.Error(), "partition: topics not co-partitioned: order-lines=6, products=3"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	err = CheckCopartitioned([][]string{{"orders", "missing"}}, parts)
	if !errors.Is(err, ErrUnknownTopic) || errors.Is(err, ErrNotCopartitioned) {
		t.Fatalf("err = %v", err)
	}
	if got, want := err.Error(), "partition: unknown topic: missing"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	err = CheckCopartitioned([][]string{{"orders", "products"}, {"gone"}}, parts)
	if !errors.Is(err, ErrUnknownTopic) || !errors.Is(err, ErrNotCopartitioned) {
		t.Fatalf("both problems not reported: %v", err)
	}
}
