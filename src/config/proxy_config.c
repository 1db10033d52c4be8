/* Istio's ProxyConfig proxyMetadata, as Istio's ztunnel gathers it: the
 * mesh config file's defaultConfig.proxyMetadata, then the PROXY_CONFIG
 * variable's proxyMetadata over it (YAML or JSON, a ProxyConfig), keys
 * without their ISTIO_META_ prefix. The ISTIO_META_* variables, which win
 * over both, are the caller's (env.c). Parsed with libyaml's document API:
 * both inputs are small. */
#include "config/env.h"

#include "base/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define META_PREFIX "ISTIO_META_"

static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(d, p->value);
    }
    return NULL;
}

/* Copies proxyMetadata's string entries into md (later ones replace). */
static int take_metadata(yaml_document_t *d, yaml_node_t *pc, const char *what,
                         struct zt_proxy_metadata *md, char *err, size_t errlen)
{
    yaml_node_t *m = map_get(d, pc, "proxyMetadata");
    if (!m)
        return 0;
    if (m->type != YAML_MAPPING_NODE)
        return zt_errf(err, errlen, ZT_E_CONFIG, "%s: proxyMetadata: expected a map", what);
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);
        yaml_node_t *v = yaml_document_get_node(d, p->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE)
            return zt_errf(err, errlen, ZT_E_CONFIG,
                           "%s: proxyMetadata: expected string keys and values", what);
        const char *key = (const char *)k->data.scalar.value;
        if (strncmp(key, META_PREFIX, strlen(META_PREFIX)) == 0)
            key += strlen(META_PREFIX);
        const char *val = (const char *)v->data.scalar.value;
        char **slot = strcmp(key, "DNS_CAPTURE") == 0      ? &md->dns_capture
                      : strcmp(key, "DNS_PROXY_ADDR") == 0 ? &md->dns_proxy_addr
                                                           : NULL;
        if (!slot)
            continue; /* other metadata means nothing to this proxy */
        free(*slot);
        *slot = strdup(val);
        if (!*slot)
            abort();
    }
    return 0;
}

/* Parses text (len bytes) as one YAML document and takes its metadata,
 * from the map under `under` (NULL: the top level). */
static int parse(const unsigned char *text, size_t len, const char *under, const char *what,
                 struct zt_proxy_metadata *md, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = 0;
    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = zt_errf(err, errlen, ZT_E_CONFIG, "%s: line %zu: %s", what,
                     parser.problem_mark.line + 1, parser.problem ? parser.problem : "bad YAML");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE)
        rc = take_metadata(&doc, under ? map_get(&doc, root, under) : root, what, md, err, errlen);
    else if (root && !(root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0))
        rc = zt_errf(err, errlen, ZT_E_CONFIG, "%s: expected a map", what);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int zt_config_proxy_metadata(const char *mesh_path, const char *pc_env,
                             struct zt_proxy_metadata *md, char *err, size_t errlen)
{
    memset(md, 0, sizeof(*md));
    int rc = 0;
    FILE *f = mesh_path ? fopen(mesh_path, "re") : NULL;
    if (!f && mesh_path && errno != ENOENT)
        return zt_errf(err, errlen, -errno, "%s: %s", mesh_path, strerror(errno));
    if (f) {
        /* A mesh config is a few KiB; 1 MiB is far past any real one. */
        unsigned char *buf = malloc(1 << 20);
        if (!buf)
            abort();
        size_t n = fread(buf, 1, 1 << 20, f);
        bool more = !feof(f);
        fclose(f);
        if (more)
            rc = zt_errf(err, errlen, ZT_E_CONFIG, "%s: larger than 1 MiB", mesh_path);
        else
            rc = parse(buf, n, "defaultConfig", mesh_path, md, err, errlen);
        free(buf);
    }
    if (!rc && pc_env && pc_env[0])
        rc = parse((const unsigned char *)pc_env, strlen(pc_env), NULL, "PROXY_CONFIG", md, err,
                   errlen);
    if (rc)
        zt_proxy_metadata_free(md);
    return rc;
}

void zt_proxy_metadata_free(struct zt_proxy_metadata *md)
{
    free(md->dns_capture);
    free(md->dns_proxy_addr);
    memset(md, 0, sizeof(*md));
}
