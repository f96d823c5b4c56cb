/* load.h: what load.c adds to the shim's API (shim/dptorch.h). */
#ifndef DPTORCH_LOAD_H
#define DPTORCH_LOAD_H

/* dpt_load_error loads the shim library if that has not been tried yet, and
 * returns NULL once it is loaded, else why it could not be (a string that
 * stays valid). */
const char *dpt_load_error(void);

#endif
