/*  mc_config: the environment of CONTRACT §1 and process plumbing shared by every binary. */
#ifndef MC_CONFIG_H
#define MC_CONFIG_H

#define MC_DEFAULT_BROKER "tcp://127.0.0.1:5570"

//  getenv with a default for unset or empty variables.
const char *mc_config_env(const char *name, const char *fallback);
//  An integer variable; fallback when unset, empty or not a number in [min, max].
long mc_config_env_long(const char *name, long fallback, long min, long max);

//  SIGINT and SIGTERM set zsys_interrupted; SIGPIPE is ignored.
void mc_config_signals(void);

//  Writes text + "\n" to path through a temporary file and rename, so readers never see half.
int mc_config_write_file(const char *path, const char *text);

//  mkdir -p with mode 0700.
int mc_config_mkdirs(const char *path);

#endif
