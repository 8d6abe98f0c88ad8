/* Joining a parallel job from the command line, and serving rank 0. */
#include "cli_parallel.h"

#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "worker.h"

gboolean
vdit_cli_comm_init (vdit_comm *comm, GError **error)
{
  const char *text = g_getenv (VDIT_COMM_TIMEOUT_ENV);
  double timeout = 0.0;
  if (text != NULL) {
    char *end = NULL;
    timeout = g_ascii_strtod (text, &end);
    if (end == text || *end != '\0' || !(timeout > 0.0 && timeout <= 1e9)) {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "%s=%s: give a collective's deadline in seconds, above 0",
                   VDIT_COMM_TIMEOUT_ENV, text);
      return FALSE;
    }
  }
  if (!vdit_comm_init_auto (comm, error))
    return FALSE;
  comm->timeout_s = timeout;
  return TRUE;
}

int
vdit_cli_rank_device (VditDevice device)
{
  const char *local = g_getenv ("OMPI_COMM_WORLD_LOCAL_RANK");
  if (local == NULL)
    local = g_getenv ("SLURM_LOCALID");
  int n_gpus = 0;
  if (local == NULL || device == VDIT_DEVICE_CPU || !vdit_cuda_available (&n_gpus) ||
      n_gpus < 1)
    return -1;
  const gint64 rank = g_ascii_strtoll (local, NULL, 10);
  return rank >= 0 ? (int) (rank % n_gpus) : -1;
}

int
vdit_cli_comm_finish (vdit_comm *comm, int status, gboolean send_stop)
{
  if (vdit_comm_size (comm) > 1) {
    GError *error = NULL;
    if (status == VDIT_EXIT_OK && send_stop && vdit_comm_rank (comm) == 0 &&
        !vdit_sp_job_send_stop (comm, &error)) {
      status = VDIT_EXIT_FAILURE;
      vdit_comm_abort (comm, status, error->message);
      g_error_free (error);
    }
    if (status != VDIT_EXIT_OK) {
      g_autofree char *why = g_strdup_printf ("exit status %d (the message above)", status);
      vdit_comm_abort (comm, status, why);
    }
  }
  vdit_comm_free (comm);
  return status;
}

int
vdit_cli_serve (vdit_comm *comm, const char *command, int argc, char **argv,
                gboolean ignore_unknown)
{
  char *device_name = NULL;
  int threads = 0;
  double idle = 0.0;
  GOptionEntry entries[] = {
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device_name, "auto, cpu or cuda (default auto)",
      "DEV" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads,
      "CPU threads (default: the CPUs this process may use)", "N" },
    { "idle-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &idle,
      "Seconds to wait for rank 0's next clip before failing (default: no limit)", "S" },
    { NULL }
  };
  GOptionContext *octx = g_option_context_new ("- serve rank 0 of a parallel job");
  g_option_context_add_main_entries (octx, entries, NULL);
  /* serving `vdit generate`: its options (--help too) are rank 0's business */
  g_option_context_set_ignore_unknown_options (octx, ignore_unknown);
  g_option_context_set_help_enabled (octx, !ignore_unknown);
  g_option_context_set_description (octx,
      "Runs under mpirun beside a rank 0 that generates (vdit generate, or a GStreamer\n"
      "pipeline with vditsrc): each clip rank 0 starts is split over every rank by\n"
      "sequence parallelism; this rank computes its share and writes nothing.\n\n"
      "Example (one process generates, three serve it):\n"
      "  mpirun -np 1 vdit generate --model DIR --prompt TEXT --out clip.y4m : \\\n"
      "         -np 3 vdit worker\n");
  int status = VDIT_EXIT_OK;
  GError *error = NULL;
  VditDevice device;
  if (!vdit_cli_parse (octx, command, &argc, &argv, &status))
    goto out;
  if (threads < 0 || idle < 0) {
    status = vdit_cli_usage (command, "--threads and --idle-timeout must not be negative");
    goto out;
  }
  if (!vdit_cli_parse_device (device_name, &device, &error)) {
    status = vdit_cli_usage (command, "%s", error->message);
    g_clear_error (&error);
    goto out;
  }
  if (vdit_comm_size (comm) < 2 || vdit_comm_rank (comm) == 0) {
    status = vdit_cli_usage (command, "vdit worker serves ranks 1 and up of an mpirun job "
                             "whose rank 0 generates: mpirun -np 1 vdit generate ... : "
                             "-np N vdit worker");
    goto out;
  }
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = device;
  cp.device_id = vdit_cli_rank_device (device);
  cp.threads = threads;
  if (!vdit_worker_serve (comm, NULL, &cp, idle, &error))
    status = vdit_cli_fail (error);
out:
  g_option_context_free (octx);
  g_free (device_name);
  return vdit_cli_comm_finish (comm, status, FALSE);
}
