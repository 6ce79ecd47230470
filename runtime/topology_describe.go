package runtime

// DescribeJSON describes the topology as JSON, for tools and for an HTTP
// endpoint beside the probes. Internal topics (repartition and changelog
// topics) are named without the application id, as "<name>-repartition"
// and "<store>-changelog"; DescribeJSONFor gives their real names. The
// output is indented, ends in a newline, and is the same bytes for the same
// topology.
//
// Schema (version 1; a new version only removes a field or changes its
// meaning, fields may be added without one). Every array is present, empty
// rather than null; fields marked optional are omitted when empty:
//
//	{
//	  "version": 1,
//	  "applicationId": "shop",            // optional: DescribeJSONFor only
//	  "subtopologies": [{                 // by id
//	    "id": 0,
//	    "sourceTopics": ["orders"],       // topics the sub-topology reads
//	    "sinkTopics": ["shop-by-customer-repartition"], // topics it writes
//	    "stores": [],                     // stores its nodes use
//	    "nodes": [{                       // parents before children
//	      "name": "orders",               // unique operator name
//	      "kind": "source",               // "source", "processor" or "sink"
//	      "op": "source",                 // "filter", "join", "aggregate", ...
//	      "topics": ["orders"],           // optional: topics a source reads
//	      "topic": "...",                 // optional: topic a sink writes
//	      "stores": [],                   // stores the node reads or writes
//	      "parents": [],                  // node names
//	      "children": ["by-customer"]
//	    }]
//	  }],
//	  "stores": [{                        // in order of first use
//	    "name": "customers",
//	    "subtopology": 1,                 // optional: absent if unused
//	    "logged": true,
//	    "table": true,                    // materializes a table
//	    "changelogTopic": "shop-customers-changelog", // optional: logged only
//	    "nodes": ["customers", "enrich"]  // nodes that use it
//	  }],
//	  "repartitionTopics": [{             // in the order they are read
//	    "name": "by-customer",            // logical name (Named)
//	    "topic": "shop-by-customer-repartition",
//	    "partitions": 8,                  // optional: absent if derived at startup
//	    "writtenBy": [0],                 // sub-topology ids
//	    "readBy": [1]
//	  }],
//	  "copartitionGroups": [              // topics that must have equal
//	    ["customers", "shop-by-customer-repartition"] // partition counts
//	  ]
//	}
//
// Topic names are the same strings everywhere in one description, so they
// can be matched across sections. The error is that of encoding/json, which
// does not fail on this type.
func (t *Topology) DescribeJSON() ([]byte, error) { return t.g.DescribeJSON("") }

// DescribeJSONFor is DescribeJSON with the real names of the internal
// topics of the application appID: "<appID>-<name>-repartition" and
// "<appID>-<store>-changelog", and "applicationId" set. An empty appID
// gives DescribeJSON.
func (t *Topology) DescribeJSONFor(appID string) ([]byte, error) { return t.g.DescribeJSON(appID) }

// Mermaid draws the topology as a Mermaid flowchart
// (https://mermaid.js.org), to paste in Markdown or serve as text, in the
// micro-topology convention: operators are diamonds, tables and stores
// cylinders, topics circles, and every sub-topology a subgraph.
//
//   - Topics are circles outside the sub-topologies; repartition topics
//     (dashed) connect the sub-topology that writes them to the one that
//     reads them. They are named as in DescribeJSON ("<name>-repartition").
//   - Source and sink nodes are folded into the edges from and to their
//     topics. A source is drawn, as a diamond, only when folding it would
//     lose an edge: when it has no children, or writes a sink directly (a
//     topic copied as is).
//   - An operator is a diamond labelled with its op and name. A table
//     (TableOf, or an aggregation's result) is a cylinder: the operator
//     that materializes it, labelled with its op, name and store; joins and
//     processors that read it get a dotted arrow from it.
//   - A processor's store (AddStore) is a cylinder linked to the
//     processors that use it by a dotted line.
//   - Solid arrows follow the records.
//
// Node ids are generated and labels quoted and escaped, so any operator,
// store or topic name gives valid Mermaid. The output is deterministic.
//
// Why cylinders for tables: Mermaid has no table shape in its classic
// syntax; the cylinder is its database/storage shape, which every renderer
// (GitHub, GitLab, older Mermaid) draws. Newer shapes such as "win-pane"
// need the @{ shape: ... } syntax of Mermaid 11.3+, which older renderers
// reject.
func (t *Topology) Mermaid() string { return t.g.Mermaid("") }

// MermaidFor is Mermaid with the real names of the repartition topics of
// the application appID ("<appID>-<name>-repartition"). An empty appID
// gives Mermaid.
func (t *Topology) MermaidFor(appID string) string { return t.g.Mermaid(appID) }
