/* SPDX-License-Identifier: MIT */
/*
 * yaml.h -- reads a YAML document (libyaml) into a small node tree that remembers the line and
 * column of every node, so the rule-spec and config loaders can name the place of a bad value.
 */
#ifndef TRAILHOOK_YAML_H
#define TRAILHOOK_YAML_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "trailhook/err.h"

enum th_yaml_type {
    TH_YAML_SCALAR,
    TH_YAML_SEQ,
    TH_YAML_MAP,
};

struct th_yaml_pair;

/** A node of a parsed document. Plain data, owned by the tree's root. */
struct th_yaml_node {
    enum th_yaml_type type;
    int line;   /**< 1-based line of the node's start */
    int column; /**< 1-based column of the node's start */
    /* TH_YAML_SCALAR */
    char *scalar;      /**< NUL-terminated value (may contain NULs: use scalar_len) */
    size_t scalar_len; /**< length of scalar in bytes */
    bool quoted;       /**< single- or double-quoted, or a block scalar: always a string */
    /* TH_YAML_SEQ */
    struct th_yaml_node **items;
    size_t nitems;
    /* TH_YAML_MAP, in document order */
    struct th_yaml_pair *pairs;
    size_t npairs;
};

struct th_yaml_pair {
    struct th_yaml_node *key;
    struct th_yaml_node *value;
};

/**
 * Parses the first (and only) document of @p data. Anchors, aliases, tags other than the core
 * schema's, a second document, duplicate keys in a mapping and keys that are not scalars are
 * errors: specs and configs are small and plain.
 * An empty document gives an empty mapping.
 * @param[in]  data    bytes, need not be NUL-terminated
 * @param[in]  len     length of data
 * @param[in]  max_depth maximum nesting of sequences and mappings (0 = 64)
 * @param[out] out     new tree, free with th_yaml_free()
 * @param[out] err     on failure "line L, column C: what is wrong" (may be NULL)
 * @param[in]  errlen  size of err
 * @return TH_OK, TH_EPARSE, TH_ETOOBIG (depth).
 */
enum th_err th_yaml_parse(const char *data, size_t len, size_t max_depth, struct th_yaml_node **out,
                          char *err, size_t errlen);

/** Frees a tree returned by th_yaml_parse(); NULL is fine. */
void th_yaml_free(struct th_yaml_node *root);

/**
 * Looks a key up in a mapping (exact, case-sensitive; keys must be scalars).
 * @return borrowed node valid as long as the tree, or NULL when absent or @p map is no mapping.
 */
const struct th_yaml_node *th_yaml_map_get(const struct th_yaml_node *map, const char *key);

/**
 * Converts a node to JSON with YAML 1.1 scalar resolution as PyYAML does: unquoted
 * null/Null/NULL/~/empty -> null; true/false/yes/no/on/off in any of the three cases -> boolean;
 * decimal, 0x, 0o, 0b and leading-zero octal integers within 64 bits -> integer; decimals with
 * '.' or exponent -> real; everything else (.inf and .nan too: JSON has no such numbers) and
 * every quoted scalar -> string. Mapping keys become strings.
 * @return new reference, or NULL on allocation failure.
 */
json_t *th_yaml_to_json(const struct th_yaml_node *node);

/**
 * Resolves a plain scalar as a boolean (true/false/yes/no/on/off in the cases PyYAML allows).
 * @return true and sets *out when the node is such a scalar.
 */
bool th_yaml_bool(const struct th_yaml_node *node, bool *out);

#endif
