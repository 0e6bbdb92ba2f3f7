// The host's operations in a VM's shared directory, against what a hostile
// guest can leave there: symlinks out of the share, and writes to read-only
// volumes. Needs root (mounts).
#include "hull/sandbox/shared_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>

#include "hull/core/sys.h"
#include "hull/core/syscall.h"
#include "testlib.h"

namespace hull::sandbox {
namespace {

class SharedDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HULL_REQUIRE_ROOT("mounts the shared directory");
    char tmpl[] = "/tmp/hull-shared-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(MakeDirs(dir_ + "/share"));
    ASSERT_TRUE(MakeDirs(dir_ + "/outside"));
    ASSERT_TRUE(MakeDirs(dir_ + "/volume"));
    ASSERT_TRUE(WriteFile(dir_ + "/volume/data", "host data"));
    root_.reset(::open((dir_ + "/share").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_.valid());
  }
  void TearDown() override {
    if (dir_.empty()) return;
    for (const auto& mount : MountPointsUnder(dir_)) ::umount2(mount.c_str(), MNT_DETACH);
    std::filesystem::remove_all(dir_);
  }
  // The host's volume bound read-write at c1/rootfs in the share.
  void BindVolumeAsRootfs() {
    auto parent = sys::OpenDirBeneath(root_.get(), "c1", true);
    ASSERT_TRUE(parent);
    ASSERT_EQ(::mkdirat(parent->get(), "rootfs", 0755), 0);
    auto target = sys::OpenBeneath(parent->get(), "rootfs", O_PATH | O_DIRECTORY);
    ASSERT_TRUE(target);
    ASSERT_TRUE(BindOnto(dir_ + "/volume", target->get(), false));
  }

  std::string dir_;
  UniqueFd root_;
};

TEST_F(SharedDirTest, CreatesNestedDirectoriesBeneathTheRoot) {
  auto opened = sys::OpenDirBeneath(root_.get(), "c1/volumes", true);
  ASSERT_TRUE(opened) << opened.error().ToString();
  EXPECT_TRUE(std::filesystem::is_directory(dir_ + "/share/c1/volumes"));
  EXPECT_FALSE(sys::OpenDirBeneath(root_.get(), "c2/volumes", false))
      << "nothing is created without `create`";
}

TEST_F(SharedDirTest, AGuestSymlinkOnTheWayIsRefused) {
  ASSERT_TRUE(MakeDirs(dir_ + "/share/c1"));
  ASSERT_EQ(::symlink((dir_ + "/outside").c_str(), (dir_ + "/share/c1/volumes").c_str()), 0);
  auto opened = sys::OpenDirBeneath(root_.get(), "c1/volumes", true);
  ASSERT_FALSE(opened);
  // ELOOP (a link on the way) or ENOTDIR (the link itself, not followed).
  EXPECT_TRUE(opened.error().sys_errno() == ELOOP || opened.error().sys_errno() == ENOTDIR)
      << opened.error().ToString();
  // Nothing was created through the link.
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/outside"));
}

TEST_F(SharedDirTest, AGuestSymlinkAsTheMountPointIsRefused) {
  auto parent = sys::OpenDirBeneath(root_.get(), "c1/volumes", true);
  ASSERT_TRUE(parent);
  ASSERT_EQ(::symlink((dir_ + "/outside/file").c_str(), (dir_ + "/share/c1/volumes/0").c_str()), 0);
  auto target = sys::OpenBeneath(parent->get(), "0", O_WRONLY | O_CREAT, 0644);
  ASSERT_FALSE(target);
  EXPECT_FALSE(PathExists(dir_ + "/outside/file")) << "O_CREAT followed the link";
  ASSERT_EQ(::symlink("..", (dir_ + "/share/c1/volumes/up").c_str()), 0);
  EXPECT_FALSE(sys::OpenDirBeneath(root_.get(), "c1/volumes/up/..", false));
}

TEST_F(SharedDirTest, ReadOnlyBindIsReadOnlyAndReadWriteBindWrites) {
  auto parent = sys::OpenDirBeneath(root_.get(), "c1/volumes", true);
  ASSERT_TRUE(parent);
  for (const char* name : {"ro", "rw"}) ASSERT_EQ(::mkdirat(parent->get(), name, 0755), 0);
  auto ro = sys::OpenBeneath(parent->get(), "ro", O_PATH | O_DIRECTORY);
  auto rw = sys::OpenBeneath(parent->get(), "rw", O_PATH | O_DIRECTORY);
  ASSERT_TRUE(ro && rw);
  ASSERT_TRUE(BindOnto(dir_ + "/volume", ro->get(), true));
  ASSERT_TRUE(BindOnto(dir_ + "/volume", rw->get(), false));
  EXPECT_EQ(*ReadFile(dir_ + "/share/c1/volumes/ro/data"), "host data");
  int fd =
      ::open((dir_ + "/share/c1/volumes/ro/new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  EXPECT_LT(fd, 0);
  EXPECT_EQ(errno, EROFS);
  if (fd >= 0) ::close(fd);
  ASSERT_TRUE(WriteFile(dir_ + "/share/c1/volumes/rw/new", "from the guest"));
  EXPECT_EQ(*ReadFile(dir_ + "/volume/new"), "from the guest");
}

// A device node or setuid file the guest leaves in a share means nothing on
// the host: every bind into the share is nosuid,nodev.
TEST_F(SharedDirTest, BindsIntoTheShareAreNosuidAndNodev) {
  ASSERT_NO_FATAL_FAILURE(BindVolumeAsRootfs());
  struct statvfs fs {};
  ASSERT_EQ(::statvfs((dir_ + "/share/c1/rootfs").c_str(), &fs), 0);
  EXPECT_NE(fs.f_flag & ST_NOSUID, 0u);
  EXPECT_NE(fs.f_flag & ST_NODEV, 0u);
  EXPECT_EQ(fs.f_flag & ST_RDONLY, 0u);
  // A device node made through the share cannot be opened through it.
  ASSERT_EQ(::mknod((dir_ + "/share/c1/rootfs/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  int fd = ::open((dir_ + "/share/c1/rootfs/null").c_str(), O_WRONLY | O_CLOEXEC);
  EXPECT_LT(fd, 0);
  EXPECT_EQ(errno, EACCES);
  if (fd >= 0) ::close(fd);
}

TEST_F(SharedDirTest, ABindDoesNotCrossIntoAMountBeneath) {
  ASSERT_NO_FATAL_FAILURE(BindVolumeAsRootfs());
  // Lookups stop at mount points: the host never walks into what it shared.
  EXPECT_FALSE(sys::OpenDirBeneath(root_.get(), "c1/rootfs", false));
}

// BindShare, as a sandbox uses it: a root filesystem and a read-only file
// volume for one container, then everything of it undone.
TEST_F(SharedDirTest, BindShareAddsForAnOwnerAndRemovesAllOfIt) {
  BindShare share(dir_ + "/share");
  ASSERT_TRUE(share.Add("c1", dir_ + "/volume", "c1/rootfs", false));
  ASSERT_TRUE(share.Add("c1", dir_ + "/volume/data", "c1/volumes/0", true));
  EXPECT_EQ(*ReadFile(dir_ + "/share/c1/rootfs/data"), "host data");
  EXPECT_EQ(*ReadFile(dir_ + "/share/c1/volumes/0"), "host data");
  EXPECT_LT(::open((dir_ + "/share/c1/volumes/0").c_str(), O_WRONLY | O_CLOEXEC), 0)
      << "a read-only volume is read-only";
  EXPECT_EQ(MountPointsUnder(dir_ + "/share/c1").size(), 2u);
  auto missing = share.Add("c1", dir_ + "/no-such-path", "c1/volumes/1", false);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);

  share.Remove("c1");
  EXPECT_TRUE(MountPointsUnder(dir_ + "/share").empty());
  EXPECT_FALSE(PathExists(dir_ + "/share/c1"));
  EXPECT_EQ(*ReadFile(dir_ + "/volume/data"), "host data") << "the host's files are untouched";
}

TEST_F(SharedDirTest, BindShareUnmountsWhatItMountedEvenIfTheGuestMovedThingsAround) {
  BindShare share(dir_ + "/share");
  ASSERT_TRUE(share.Add("c1", dir_ + "/volume", "c1/rootfs", false));
  // The guest replaces the way to a mount point with a symlink to the host.
  ASSERT_TRUE(MakeDirs(dir_ + "/outside/rootfs"));
  ASSERT_EQ(::mount("tmpfs", (dir_ + "/outside/rootfs").c_str(), "tmpfs", 0, nullptr), 0);
  ASSERT_EQ(::mkdir((dir_ + "/share/c2").c_str(), 0755), 0);
  ASSERT_EQ(::symlink((dir_ + "/outside").c_str(), (dir_ + "/share/c2/link").c_str()), 0);
  ASSERT_FALSE(share.Add("c2", dir_ + "/volume", "c2/link/rootfs", false))
      << "a mount through the guest's link";
  share.Remove("c2");
  EXPECT_EQ(MountPointsUnder(dir_ + "/outside").size(), 1u) << "the host's mount was left alone";
  ::umount2((dir_ + "/outside/rootfs").c_str(), MNT_DETACH);
  share.Remove("c1");
  EXPECT_TRUE(MountPointsUnder(dir_ + "/share").empty());
}

}  // namespace
}  // namespace hull::sandbox
