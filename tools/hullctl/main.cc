// hullctl: the operator's tool for hull.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "commands.h"
#include "hull/core/log.h"

int main(int argc, char** argv) {
  CLI::App app{"hullctl: run and inspect hull microVMs"};
  app.require_subcommand(1);
  std::string config_path;
  std::string log_level;
  app.add_option("--config", config_path,
                 "configuration file (default: $HULL_CONFIG, /etc/hull/config.toml)");
  app.add_option("--log-level", log_level,
                 "trace, debug, info, warn, error or off (default: $HULL_LOG_LEVEL, warn)");

  auto* check = app.add_subcommand("check", "report whether this host can run hull, and why not");

  auto* vm = app.add_subcommand("vm", "work with bare VMs");
  vm->require_subcommand(1);
  hull::hullctl::PingOptions ping;
  auto* ping_cmd =
      vm->add_subcommand("ping", "boot a VM, reach its agent, print the boot-to-ready time");
  const auto backends = CLI::IsMember({"qemu", "libvirt"});
  ping_cmd
      ->add_option("--hypervisor", ping.hypervisor, "VM backend (default: from the configuration)")
      ->check(backends);
  ping_cmd->add_option("--transport", ping.transport, "agent transport")
      ->check(CLI::IsMember({"serial", "vsock"}));
  ping_cmd->add_option("--accel", ping.accel, "accelerator")
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}));
  ping_cmd->add_option("--memory", ping.memory_mib, "guest memory in MiB")
      ->check(CLI::Range(64, 1 << 20));
  ping_cmd->add_option("--cpus", ping.cpus, "guest vCPUs")->check(CLI::Range(1, 255));
  ping_cmd->add_option("--kernel", ping.kernel, "guest kernel (default: from the configuration)");
  ping_cmd->add_option("--initrd", ping.initrd, "guest initrd (default: from the configuration)");
  ping_cmd->add_flag("--json", ping.json, "print the result as JSON");
  ping_cmd->add_flag("--console", ping.keep_console, "print the guest console log at the end");
  ping_cmd->add_flag("--template", ping.from_template,
                     "start the VM as a clone of the template for its shape (built first if "
                     "missing, not timed)");
  ping_cmd->add_flag(
      "--until-poweroff", ping.until_poweroff,
      "do not contact the agent; time launch until the guest powers off (benchmark floor)");

  hull::hullctl::RunOptions run;
  auto* run_cmd =
      app.add_subcommand("run", "run an OCI bundle (or a root filesystem) in a fresh microVM");
  run_cmd
      ->add_option("--hypervisor", run.hypervisor, "VM backend (default: from the configuration)")
      ->check(backends);
  run_cmd->add_option("--bundle", run.bundle,
                      "bundle directory: config.json and its rootfs (as runc takes)");
  run_cmd->add_option("--rootfs", run.rootfs,
                      "a root filesystem directory, run with the default spec");
  run_cmd->add_flag("-t,--tty", run.tty, "allocate a terminal (raw mode, window size follows)");
  run_cmd->add_option("--memory", run.memory, "VM memory, e.g. 512M or 1G");
  run_cmd->add_option("--cpus", run.cpus, "VM vCPUs")->check(CLI::Range(1, 255));
  run_cmd->add_option("--name", run.name, "container id (default: run-<random>)");
  run_cmd->add_option("command", run.args,
                      "command and arguments (after --), replacing process.args");

  auto* gc_cmd = app.add_subcommand(
      "gc",
      "remove what killed `hullctl run`/`vm ping` processes left behind, and stale VM templates");
  hull::hullctl::GcOptions gc;
  gc_cmd->add_flag("--templates", gc.all_templates,
                   "remove every VM template, not only those of a changed guest image or QEMU");

  auto* template_cmd =
      app.add_subcommand("template", "VM templates: pre-booted VMs that sandboxes start from");
  template_cmd->require_subcommand(1);
  hull::hullctl::TemplateOptions templates;
  auto* template_build = template_cmd->add_subcommand(
      "build", "build the template for the configuration's VM shape (done on first use anyway)");
  template_build->add_option("--memory", templates.memory, "VM memory, e.g. 512M or 1G");
  template_build->add_option("--cpus", templates.cpus, "VM vCPUs")->check(CLI::Range(1, 255));
  auto* template_ls = template_cmd->add_subcommand("ls", "list the templates and their shapes");

  CLI11_PARSE(app, argc, argv);

  const char* env_level = std::getenv("HULL_LOG_LEVEL");
  if (log_level.empty())
    log_level = env_level != nullptr && *env_level != '\0' ? env_level : "warn";
  if (auto logging = hull::InitLogging("hullctl", log_level); !logging) {
    std::fprintf(stderr, "hullctl: %s\n", logging.error().ToString().c_str());
    return 2;
  }
  if (check->parsed()) return hull::hullctl::RunCheck({config_path});
  if (gc_cmd->parsed()) {
    gc.config_path = config_path;
    return hull::hullctl::RunGc(gc);
  }
  templates.config_path = config_path;
  if (template_build->parsed()) return hull::hullctl::RunTemplateBuild(templates);
  if (template_ls->parsed()) return hull::hullctl::RunTemplateList(templates);
  if (run_cmd->parsed()) {
    run.config_path = config_path;
    return hull::hullctl::RunContainer(run);
  }
  if (ping_cmd->parsed()) {
    ping.config_path = config_path;
    return hull::hullctl::RunVmPing(ping);
  }
  return 2;
}
