/* One communicator for the whole process. */
#ifndef VDIT_COMM_PROCESS_H
#define VDIT_COMM_PROCESS_H

#include "comm.h"

G_BEGIN_DECLS

/* The mpirun job this process was started in (vdit_comm_init_auto), joined on the first
 * call and left when the process exits: rank 0 then sends the stop to the ranks serving
 * it (vdit worker); on any other rank exiting ends the whole job. A single rank when not started by mpirun. The deadline of each
 * collective comes from VDIT_COMM_TIMEOUT (seconds). NULL with the error of the join. */
const vdit_comm *vdit_comm_process (GError **error);

G_END_DECLS

#endif
