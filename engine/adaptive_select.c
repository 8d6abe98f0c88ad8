/* AdaSpa pattern choice: top blocks per row with one count per head, counts moved from
 * heads that already recall most of their mass to the heads that recall least. */
#include "adaptive_select.h"

#include <math.h>
#include <string.h>

static gint
by_score_desc (gconstpointer a, gconstpointer b, gpointer user_data)
{
  const float *row = user_data;
  const int32_t i = *(const int32_t *) a, j = *(const int32_t *) b;
  if (row[i] != row[j])
    return row[i] > row[j] ? -1 : 1;
  return i < j ? -1 : i > j;
}

static gint
by_index (gconstpointer a, gconstpointer b, gpointer user_data)
{
  const int32_t i = *(const int32_t *) a, j = *(const int32_t *) b;
  return i < j ? -1 : i > j;
}

double
vdit_adaptive_select (vdit_block_layout *out, int *keep_out, const float *scores, int heads,
                      int n_q, int n_k, int block_q, int block_k, float sparsity)
{
  /* in 64 bits: n + block − 1 overflows an int for blocks near INT_MAX */
  const int nqb = (int) (((int64_t) n_q + block_q - 1) / block_q);
  const int nkb = (int) (((int64_t) n_k + block_k - 1) / block_k);
  const int min_keep = MIN (2, nkb);
  int target = (int) lround ((1.0 - sparsity) * nkb);
  target = CLAMP (target, min_keep, nkb);

  /* order: each row's key blocks, sink first, then by falling score.
   * recall(h, c): the share of head h's mass its rows keep with c blocks each. */
  int32_t *order = g_new (int32_t, (size_t) heads * nqb * nkb);
  double *recall = g_new0 (double, (size_t) heads * (nkb + 1));
  int *keep = g_new (int, heads);
  for (int h = 0; h < heads; h++) {
    double *r = recall + (size_t) h * (nkb + 1);
    for (int i = 0; i < nqb; i++) {
      const float *row = scores + ((size_t) h * nqb + i) * nkb;
      int32_t *o = order + ((size_t) h * nqb + i) * nkb;
      for (int j = 0; j < nkb; j++)
        o[j] = j;
      if (nkb > 2)
        g_qsort_with_data (o + 1, nkb - 1, sizeof (int32_t), by_score_desc, (gpointer) row);
      double sum = 0.0;
      for (int c = 0; c < nkb; c++) {
        sum += row[o[c]];
        r[c + 1] += sum;
      }
    }
    const double total = r[nkb];
    for (int c = 0; c <= nkb; c++)
      r[c] = total > 0.0 ? r[c] / total : 1.0;
    keep[h] = target;
  }

  /* Move one block at a time from the head that stays best above the recall bar to the
   * worst head below it. A receiver never gives back and a donor never takes, so this
   * ends after at most heads·nkb moves. */
  for (;;) {
    int recv = -1, donor = -1;
    for (int h = 0; h < heads; h++) {
      const double *r = recall + (size_t) h * (nkb + 1);
      if (keep[h] < nkb && r[keep[h]] < VDIT_ADAPTIVE_RECALL
          && (recv < 0 || r[keep[h]] < recall[(size_t) recv * (nkb + 1) + keep[recv]]))
        recv = h;
    }
    for (int h = 0; h < heads; h++) {
      const double *r = recall + (size_t) h * (nkb + 1);
      if (h != recv && keep[h] > min_keep && r[keep[h] - 1] >= VDIT_ADAPTIVE_RECALL
          && (donor < 0 || r[keep[h] - 1] > recall[(size_t) donor * (nkb + 1) + keep[donor] - 1]))
        donor = h;
    }
    if (recv < 0 || donor < 0)
      break;
    keep[recv]++;
    keep[donor]--;
  }

  int64_t total_kept = 0;
  for (int h = 0; h < heads; h++)
    total_kept += (int64_t) keep[h] * nqb;
  int32_t *row_ptr = g_new (int32_t, (size_t) heads * (nqb + 1));
  int32_t *cols = g_new (int32_t, MAX (total_kept, 1));
  int32_t n = 0;
  for (int h = 0; h < heads; h++) {
    int32_t *rp = row_ptr + (size_t) h * (nqb + 1);
    rp[0] = n;
    for (int i = 0; i < nqb; i++) {
      const int32_t *o = order + ((size_t) h * nqb + i) * nkb;
      for (int c = 0; c < keep[h]; c++)
        cols[n + c] = o[c];
      g_qsort_with_data (cols + n, keep[h], sizeof (int32_t), by_index, NULL);
      n += keep[h];
      rp[i + 1] = n;
    }
  }

  *out = (vdit_block_layout) {
    .block_q = block_q, .block_k = block_k, .n_q = n_q, .n_k = n_k,
    .n_qblocks = nqb, .n_kblocks = nkb, .n_heads = heads,
    .row_ptr = row_ptr, .cols = cols,
  };
  if (keep_out)
    memcpy (keep_out, keep, sizeof (int) * heads);
  g_free (keep);
  g_free (recall);
  g_free (order);
  return (double) total_kept / ((double) heads * nqb * nkb);
}

double
vdit_layout_recall (const vdit_block_layout *l, const float *scores, int heads, double *recall)
{
  double kept_all = 0.0, total_all = 0.0;
  for (int h = 0; h < heads; h++) {
    const int32_t *rp = l->row_ptr + (size_t) (l->n_heads == 1 ? 0 : h) * (l->n_qblocks + 1);
    double kept = 0.0, total = 0.0;
    for (int i = 0; i < l->n_qblocks; i++) {
      const float *row = scores + ((size_t) h * l->n_qblocks + i) * l->n_kblocks;
      for (int j = 0; j < l->n_kblocks; j++)
        total += row[j];
      for (int c = rp[i]; c < rp[i + 1]; c++)
        kept += row[l->cols[c]];
    }
    if (recall)
      recall[h] = total > 0.0 ? kept / total : 1.0;
    kept_all += kept;
    total_all += total;
  }
  return total_all > 0.0 ? kept_all / total_all : 1.0;
}
