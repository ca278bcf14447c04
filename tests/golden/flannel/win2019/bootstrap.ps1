# hybrid Windows node bootstrap. Runs at every boot (persisted user data);
# each stage leaves a marker file and is skipped once done, so the reboot the
# Containers feature needs simply resumes at the next stage.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$Root = 'C:\hybrid'
New-Item -ItemType Directory -Force -Path $Root, 'C:\k', 'C:\var\log\kubelet' | Out-Null
Start-Transcript -Append -Path "$Root\bootstrap.log" | Out-Null

$Cni = 'flannel'
$KubeletArgs = @('--cert-dir=C:\var\lib\kubelet\pki', '--config=C:\var\lib\kubelet\config.yaml', '--bootstrap-kubeconfig=C:\etc\kubernetes\bootstrap-kubelet.conf', '--kubeconfig=C:\etc\kubernetes\kubelet.conf', '--container-runtime-endpoint=npipe:////./pipe/containerd-containerd', '--cgroups-per-qos=false', '--enforce-node-allocatable=', '--resolv-conf=', '--enable-debugging-handlers', '--max-pods=110', '--node-labels=qa.example.com/ltsc=2019', '--register-with-taints=os=windows:NoSchedule')
$JoinConfig = '# kubeadm configuration of a Windows worker. kubelet runs as a service with
# fixed flags (labels and taints included), so only discovery and the node
# name matter to kubeadm here.
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "10.50.0.10:6443"
    token: "jim6bl.40fhid6j50wimc9f"
    caCertHashes: ["sha256:89fc0b778f8e139c79c686c7d3fc02109290f3bfd76872a37004c8d6b87ddca1"]
nodeRegistration:
  name: "__HYBRID_NODE_NAME__"
  criSocket: "npipe:////./pipe/containerd-containerd"
  taints: [{"effect": "NoSchedule", "key": "os", "value": "windows"}]
'

function Log($Message) { Write-Host "$(Get-Date -Format o) hybrid: $Message" }

# Runs $Body once; a body that returns 'reboot' restarts the machine and the
# script continues with the next stage at the next boot.
function Stage($Name, [scriptblock]$Body) {
  $Marker = Join-Path $Root "$Name.done"
  if (Test-Path $Marker) { return }
  Log "stage $Name"
  $Result = & $Body
  New-Item -ItemType File -Force -Path $Marker | Out-Null
  if ($Result -contains 'reboot') {
    Log "rebooting after $Name"
    Stop-Transcript | Out-Null
    Restart-Computer -Force
    exit 0
  }
}

function Retry([int]$Attempts, [int]$Delay, [scriptblock]$Body) {
  for ($i = 1; ; $i++) {
    try { return & $Body } catch {
      if ($i -ge $Attempts) { throw }
      Log "attempt $i failed: $_"
      Start-Sleep -Seconds $Delay
    }
  }
}

function Fetch($Url, $Path) {
  Retry 10 10 { Invoke-WebRequest -UseBasicParsing -Uri $Url -OutFile $Path }
}

# IMDSv2 only: instances are launched with HttpTokens=required.
function Imds($Path) {
  Retry 30 2 {
    $T = Invoke-RestMethod -Method Put -Uri 'http://169.254.169.254/latest/api/token' -Headers @{ 'X-aws-ec2-metadata-token-ttl-seconds' = '300' }
    Invoke-RestMethod -Uri "http://169.254.169.254/latest/meta-data/$Path" -Headers @{ 'X-aws-ec2-metadata-token' = $T }
  }
}

Stage 'containers-feature' {
  $R = Install-WindowsFeature -Name Containers
  if ($R.RestartNeeded -eq 'Yes') { 'reboot' }
}

Stage 'containerd' {
  # No Hyper-V: EC2 instances other than metal cannot run it, and Kubernetes
  # uses process isolation only (WINDOWS-NOTES §3.1).
  $Dir = "$env:ProgramFiles\containerd"
  Fetch 'https://github.com/containerd/containerd/releases/download/v1.7.27/containerd-1.7.27-windows-amd64.tar.gz' "$Root\containerd.tar.gz"
  New-Item -ItemType Directory -Force -Path $Dir, 'C:\opt\cni\bin', 'C:\etc\cni\net.d' | Out-Null
  tar.exe -xzf "$Root\containerd.tar.gz" -C $Dir
  $Config = (& "$Dir\bin\containerd.exe" config default) -join "`n"
  $Config = $Config -replace 'bin_dir = .*', 'bin_dir = "C:/opt/cni/bin"' -replace 'conf_dir = .*', 'conf_dir = "C:/etc/cni/net.d"'
  Set-Content -Path "$Dir\config.toml" -Value $Config -Encoding Ascii
  [Environment]::SetEnvironmentVariable('Path', "$env:Path;$Dir\bin;C:\k", 'Machine')
  & "$Dir\bin\containerd.exe" --register-service --log-file 'C:\var\log\containerd.log'
  Start-Service containerd
}

Stage 'kubelet' {
  New-Item -ItemType Directory -Force -Path 'C:\var\lib\kubelet\etc\kubernetes', 'C:\etc\kubernetes\pki', 'C:\etc\kubernetes\manifests' | Out-Null
  if (-not (Test-Path 'C:\var\lib\kubelet\etc\kubernetes\pki')) {
    New-Item -ItemType SymbolicLink -Path 'C:\var\lib\kubelet\etc\kubernetes\pki' -Value 'C:\etc\kubernetes\pki' | Out-Null
  }
  Fetch 'https://dl.k8s.io/v1.34.1/bin/windows/amd64/kubelet.exe' 'C:\k\kubelet.exe'
  Fetch 'https://dl.k8s.io/v1.34.1/bin/windows/amd64/kubeadm.exe' 'C:\k\kubeadm.exe'
  Fetch 'https://k8stestinfrabinaries.blob.core.windows.net/nssm-mirror/nssm-2.24.zip' "$Root\nssm.zip"
  Expand-Archive -Force -Path "$Root\nssm.zip" -DestinationPath "$Root\nssm"
  Copy-Item -Force -Path "$Root\nssm\nssm-2.24\win64\nssm.exe" -Destination 'C:\k\nssm.exe'
  & C:\k\nssm.exe install kubelet 'C:\k\kubelet.exe'
  & C:\k\nssm.exe set kubelet DependOnService containerd
  & C:\k\nssm.exe set kubelet AppStdout 'C:\var\log\kubelet\kubelet.log'
  & C:\k\nssm.exe set kubelet AppStderr 'C:\var\log\kubelet\kubelet.log'
  & C:\k\nssm.exe set kubelet AppRotateFiles 1
  & C:\k\nssm.exe set kubelet AppRotateBytes 10485760
  # kubelet, VXLAN overlay and NodePorts; Windows Firewall blocks inbound by default.
  New-NetFirewallRule -Name hybrid-kubelet -DisplayName 'kubelet (hybrid)' -Protocol TCP -LocalPort 10250 -Action Allow | Out-Null
  New-NetFirewallRule -Name hybrid-vxlan -DisplayName 'VXLAN (hybrid)' -Protocol UDP -LocalPort '4789' -Action Allow | Out-Null
  New-NetFirewallRule -Name hybrid-nodeport-tcp -DisplayName 'NodePorts TCP (hybrid)' -Protocol TCP -LocalPort '30000-32767' -Action Allow | Out-Null
  New-NetFirewallRule -Name hybrid-nodeport-udp -DisplayName 'NodePorts UDP (hybrid)' -Protocol UDP -LocalPort '30000-32767' -Action Allow | Out-Null
}

Stage 'imds-route' {
  # Creating the HNS network (Calico or flannel) can drop the route to
  # instance metadata; a task puts it back (WINDOWS-NOTES §2.2).
  $Fix = 'if (-not (Get-NetRoute -DestinationPrefix 169.254.169.254/32 -ErrorAction SilentlyContinue)) { $G = (Get-NetRoute -DestinationPrefix 0.0.0.0/0 | Sort-Object RouteMetric | Select-Object -First 1).NextHop; route.exe /p add 169.254.169.254 mask 255.255.255.255 $G }'
  Set-Content -Path 'C:\k\imds-route.ps1' -Value $Fix
  $Action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument '-NoProfile -ExecutionPolicy Bypass -File C:\k\imds-route.ps1'
  $Trigger = New-ScheduledTaskTrigger -Once -At (Get-Date) -RepetitionInterval (New-TimeSpan -Minutes 2)
  Register-ScheduledTask -Force -TaskName 'hybrid-imds-route' -Action $Action -Trigger $Trigger -User 'SYSTEM' -RunLevel Highest | Out-Null
}

Stage 'flannel-config' {
  # flanneld on Windows reads the same net-conf as Linux: VNI >= 4096, port 4789.
  New-Item -ItemType Directory -Force -Path 'C:\etc\kube-flannel' | Out-Null
  Set-Content -Path 'C:\etc\kube-flannel\net-conf.json' -Value '{
  "Backend": {
    "Port": 4789,
    "Type": "vxlan",
    "VNI": 4096
  },
  "Network": "10.244.0.0/16"
}' -Encoding Ascii
}

Stage 'openssh' {
  # `hybrid logs` collects diagnostics over SSH; port 22 is open to admin_cidrs only.
  Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0' | Out-Null
  Set-Service -Name sshd -StartupType Automatic
  Start-Service sshd
  # The instance's key pair, if it has one, may log in as Administrator.
  try {
    $T = Invoke-RestMethod -Method Put -Uri 'http://169.254.169.254/latest/api/token' -Headers @{ 'X-aws-ec2-metadata-token-ttl-seconds' = '300' }
    $Key = Invoke-RestMethod -Uri 'http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key' -Headers @{ 'X-aws-ec2-metadata-token' = $T }
    $Auth = 'C:\ProgramData\ssh\administrators_authorized_keys'
    Set-Content -Path $Auth -Value $Key -Encoding Ascii
    icacls.exe $Auth /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F' | Out-Null
  } catch { Log 'no key pair: SSH keys left unset' }
}

Stage 'join' {
  $NodeName = [string](Imds 'local-hostname')
  $NodeIp = [string](Imds 'local-ipv4')
  # The node name must be the EC2 private DNS name; refuse anything else
  # before it reaches a config file or a command line.
  if ($NodeName -notmatch '^[a-z0-9.-]+$' -or $NodeIp -notmatch '^[0-9.]+$') { throw 'unexpected instance metadata' }
  $Config = $JoinConfig.Replace('__HYBRID_NODE_NAME__', $NodeName)
  Set-Content -Path 'C:\k\kubeadm-join.yaml' -Value $Config -Encoding Ascii
  $AllArgs = $KubeletArgs + @("--hostname-override=$NodeName", "--node-ip=$NodeIp")
  & C:\k\nssm.exe set kubelet AppParameters ($AllArgs -join ' ')
  # Workers boot alongside the control plane: retry until the API answers.
  for ($i = 1; ; $i++) {
    & C:\k\kubeadm.exe join --config 'C:\k\kubeadm-join.yaml'
    if ($LASTEXITCODE -eq 0) { break }
    if ($i -ge 120) { throw "kubeadm join failed $i times" }
    Log "join attempt $i failed; retrying in 30s"
    & C:\k\kubeadm.exe reset -f | Out-Null
    Start-Sleep -Seconds 30
  }
}

Log "node ready for $Cni"
Stop-Transcript | Out-Null
